// extern "C" exports of the HCS simulator (computecore.h).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "computecore.h"
#include "config.h"
#include "core.h"
#include "document.h"
#include "events.h"
#include "gcs.h"
#include "json.h"
#include "persist.h"
#include "scheduler.h"
#include "uuid.h"

using namespace hcssim;

namespace {

// ------------------------------------------------------------------------------------------------
// System handles

struct SysHandle {
  uintptr_t handle = 0;
  SystemRecPtr rec;
  const void *eventContext = nullptr;
  HCS_EVENT_CALLBACK eventCallback = nullptr;
  uint32_t eventOptions = 0;
};
using SysHandlePtr = std::shared_ptr<SysHandle>;

struct SysTable {
  std::mutex m;
  std::unordered_map<uintptr_t, SysHandlePtr> handles;
  uintptr_t next = 0x20000000;
};

SysTable &sysTable() {
  static SysTable *t = new SysTable();
  return *t;
}

SysHandlePtr findSystem(HCS_SYSTEM h) {
  SysTable &t = sysTable();
  std::lock_guard<std::mutex> lock(t.m);
  auto it = t.handles.find(reinterpret_cast<uintptr_t>(h));
  return it == t.handles.end() ? nullptr : it->second;
}

HCS_SYSTEM newSystemHandle(const SystemRecPtr &rec) {
  auto h = std::make_shared<SysHandle>();
  h->rec = rec;
  SysTable &t = sysTable();
  std::lock_guard<std::mutex> lock(t.m);
  h->handle = t.next;
  t.next += 16;
  t.handles[h->handle] = h;
  return reinterpret_cast<HCS_SYSTEM>(h->handle);
}

// A document argument: copied now (HCS copies what it needs before it returns), parsed later.
DocumentPtr docArg(PCWSTR s) { return std::make_shared<Document>(s); }

// The system behind `computeSystem`, or nullptr after tracing the call as failed with HCS_E_HANDLE.
SysHandlePtr systemForCall(const char *fn, HCS_SYSTEM computeSystem, Document *doc) {
  SysHandlePtr h = findSystem(computeSystem);
  if (!h) traceCall(fn, nullptr, doc ? doc->traced() : nullptr, HCS_E_HANDLE);
  return h;
}

void checkLiveLocked(const SystemRec *rec) {
  switch (rec->status) {
    case SystemRec::Status::Live: return;
    case SystemRec::Status::Pending:
      fail(HCS_E_INVALID_STATE, "the compute system " + rec->id + " has not finished being created");
    case SystemRec::Status::Failed:
    case SystemRec::Status::Dropped:
      fail(HCS_E_SYSTEM_NOT_FOUND, "A virtual machine or container with the specified identifier does not exist: " + rec->id);
  }
}

Json standardProperties(const System &sys) {
  Json p = Json::object();
  p.set("Id", Json::string(sys.id));
  p.set("State", Json::string(sys.state));
  p.set("SystemType", Json::string("VirtualMachine"));
  p.set("RuntimeId", Json::string(sys.runtimeId));
  if (sys.hasOwner) p.set("Owner", Json::string(sys.owner));
  return p;
}

// Starts an operation-driven call: validates the operation handle, evaluates faults (counted at
// call time), traces at completion. `work` runs on a worker thread after the latency and receives
// the fault that fired for this call (hit == false if none); it must fail with it unless guestOnly.
// `rec` is the system the call is about (null: none), whose id is traced. The operation keeps `doc`
// and `rec` as long as it lives, so `work` may hold plain pointers to them (a work of two pointers
// is stored in the std::function itself, no allocation).
HRESULT launch(HCS_OPERATION operation, const char *fn, const SystemRecPtr &rec, const DocumentPtr &doc, OpWork work,
               std::function<void()> onNotApplied = nullptr) {
  const std::string *id = rec ? &rec->id : nullptr;
  OpPtr op = findOperation(operation);
  HRESULT early = !op ? HCS_E_HANDLE : operationStarted(op) ? HCS_E_OPERATION_ALREADY_STARTED : HCS_S_OK;
  if (early < 0) {
    traceCall(fn, id, doc->traced(), early);
    return early;
  }
  FaultHit fault = matchFault(fn, [&doc] { return doc->valid(); });
  StartSpec spec;
  spec.fn = fn;
  if (fault.hit && fault.crash) {
    // A crash fault: the VM dies when the worker picks this call up (its SystemExited delivered on
    // that worker), then the call runs as usual against the stopped VM.
    if (id)
      work = [work = std::move(work), crashId = *id, attribution = fault.attribution](const FaultHit &f) {
        std::string ignored;
        crashSystem(crashId, attribution, ignored, true);
        return work(f);
      };
    fault = FaultHit{};
  }
  spec.work = std::move(work);
  // A hang fault parks the operation; released (control "releaseHangs") it fails with its hr if
  // it has one, else it is applied like any other call.
  spec.hang = fault.hit && fault.hang;
  if (fault.hit && !(fault.hang && !fault.hasHr)) spec.fault = std::move(fault);
  spec.onNotApplied = std::move(onNotApplied);
  spec.latencyMs = pickLatencyMs(fn);
  spec.traceWanted = true;
  // The id where it is, owning the record it is in (no copy of the id, and the record lives as
  // long as the operation).
  if (rec) spec.traceId = std::shared_ptr<const std::string>(rec, id);
  spec.traceDoc = doc;
  HRESULT hr = startOperation(op, std::move(spec));
  if (hr < 0) traceCall(fn, id, doc->traced(), hr);
  return hr;
}

void failWithFault(const FaultHit &f) {
  if (f.hit && !f.guestOnly) fail(f.hr, f.message);
}

void requireParsed(Document &d, const char *what) {
  if (d.malformed()) invalidJson(std::string(what) + " is not valid JSON: " + d.error());
}

OpOutcome transition(const SystemRecPtr &rec, Document &options, const char *fn) {
  options.json();  // parsed here, outside the model lock
  Core &c = core();
  std::lock_guard<std::mutex> lock(c.modelMu);
  checkLiveLocked(rec.get());
  requireParsed(options, "options");
  System &sys = rec->sys;
  std::string f = fn;
  if (f == "HcsStartComputeSystem") {
    if (sys.state != "Created")
      fail(HCS_E_INVALID_STATE, "cannot start compute system " + sys.id + " in state " + sys.state);
    sys.state = "Running";
  } else {
    if (sys.state == "Stopped") fail(HCS_E_SYSTEM_ALREADY_STOPPED, "compute system " + sys.id + " is already stopped");
    sys.state = "Stopped";
  }
  saveStateLocked();
  return OpOutcome{};
}

}  // namespace

extern "C" {

// ------------------------------------------------------------------------------------------------
// Operations

HCS_API HCS_OPERATION HCS_CALL HcsCreateOperation(const void *context, HCS_OPERATION_COMPLETION callback) {
  return registerOperation(context, callback);
}

HCS_API void HCS_CALL HcsCloseOperation(HCS_OPERATION operation) { closeOperation(operation); }

static HRESULT resultOf(const OpPtr &op, PWSTR *resultDocument) {
  // op->m held by caller
  if (op->st == Operation::St::NotStarted) return HCS_E_OPERATION_NOT_STARTED;
  if (op->st != Operation::St::Done) return HCS_E_OPERATION_PENDING;
  if (resultDocument && op->hasDoc) {
    size_t bytes = (op->doc.size() + 1) * sizeof(char16_t);
    auto *buf = static_cast<char16_t *>(std::malloc(bytes));
    if (!buf) return HCS_E_OUTOFMEMORY;
    std::memcpy(buf, op->doc.data(), op->doc.size() * sizeof(char16_t));
    buf[op->doc.size()] = 0;
    *resultDocument = buf;
  }
  return op->hr;
}

HCS_API HRESULT HCS_CALL HcsGetOperationResult(HCS_OPERATION operation, PWSTR *resultDocument) {
  if (resultDocument) *resultDocument = nullptr;
  OpPtr op = findOperation(operation);
  if (!op) return HCS_E_HANDLE;
  std::lock_guard<std::mutex> lock(op->m);
  return resultOf(op, resultDocument);
}

HCS_API HRESULT HCS_CALL HcsWaitForOperationResult(HCS_OPERATION operation, DWORD timeoutMs, PWSTR *resultDocument) {
  if (resultDocument) *resultDocument = nullptr;
  OpPtr op = findOperation(operation);
  if (!op) return HCS_E_HANDLE;
  std::unique_lock<std::mutex> lock(op->m);
  if (op->st == Operation::St::NotStarted) return HCS_E_OPERATION_NOT_STARTED;
  auto done = [&] { return op->st == Operation::St::Done; };
  if (timeoutMs == HCS_INFINITE) {
    op->cv.wait(lock, done);
  } else if (!op->cv.wait_for(lock, std::chrono::milliseconds(timeoutMs), done)) {
    return HCS_E_OPERATION_TIMEOUT;
  }
  return resultOf(op, resultDocument);
}

HCS_API HRESULT HCS_CALL HcsSetOperationCallback(HCS_OPERATION operation, const void *context,
                                                 HCS_OPERATION_COMPLETION callback) {
  OpPtr op = findOperation(operation);
  if (!op) return HCS_E_HANDLE;
  std::lock_guard<std::mutex> lock(op->m);
  if (op->st != Operation::St::NotStarted) return HCS_E_OPERATION_ALREADY_STARTED;
  op->context = context;
  op->callback = callback;
  return HCS_S_OK;
}

HCS_API HRESULT HCS_CALL HcsCancelOperation(HCS_OPERATION operation) {
  // Documented as not implemented: always E_NOTIMPL. Control "cancel": "honoured" (a deviation
  // from HCS, off by default) makes a queued operation complete with E_ABORT instead.
  HRESULT hr = HCS_E_NOTIMPL;
  if (cancelHonoured()) {
    OpPtr op = findOperation(operation);
    hr = op ? cancelOperation(op) : HCS_E_HANDLE;
  }
  traceCall("HcsCancelOperation", nullptr, nullptr, hr);
  return hr;
}

// ------------------------------------------------------------------------------------------------
// Compute systems

HCS_API HRESULT HCS_CALL HcsCreateComputeSystem(PCWSTR id, PCWSTR configuration, HCS_OPERATION operation,
                                                const void *securityDescriptor, HCS_SYSTEM *computeSystem) {
  (void)securityDescriptor;
  const char *fn = "HcsCreateComputeSystem";
  std::string sid = id ? utf16ToUtf8(id) : std::string();
  DocumentPtr doc = docArg(configuration);
  const std::string *tid = id ? &sid : nullptr;
  HRESULT early = HCS_S_OK;
  if (!id || sid.empty() || !configuration) early = HCS_E_INVALIDARG;
  else if (!computeSystem) early = HCS_E_POINTER;
  if (early < 0) {
    traceCall(fn, tid, doc->traced(), early);
    return early;
  }
  *computeSystem = nullptr;
  auto rec = std::make_shared<SystemRec>();
  rec->id = sid;
  rec->handles = 1;
  DocumentPtr captured = doc;
  OpWork work = [rec, captured](const FaultHit &fault) -> OpOutcome {
    captured->json();  // parsed here, outside the model lock
    Core &c = core();
    std::lock_guard<std::mutex> lock(c.modelMu);
    try {
      failWithFault(fault);
      if (c.registry.count(rec->id))
        fail(HCS_E_SYSTEM_ALREADY_EXISTS, "A virtual machine or container with the specified identifier already exists: " + rec->id);
      if (!captured->present()) invalidJson("the configuration document is empty");
      requireParsed(*captured, "the configuration document");
      buildSystemFromCreateDoc(rec->id, captured->json(), rec->sys);
      rec->status = SystemRec::Status::Live;
      c.registry[rec->id] = rec;
      saveStateLocked();
    } catch (...) {
      if (rec->status == SystemRec::Status::Pending) rec->status = SystemRec::Status::Failed;
      throw;
    }
    return OpOutcome{};
  };
  auto notApplied = [rec]() {
    std::lock_guard<std::mutex> lock(core().modelMu);
    if (rec->status == SystemRec::Status::Pending) rec->status = SystemRec::Status::Failed;
  };
  HRESULT hr = launch(operation, fn, rec, doc, std::move(work), notApplied);
  if (hr < 0) return hr;
  *computeSystem = newSystemHandle(rec);
  return HCS_S_OK;
}

HCS_API HRESULT HCS_CALL HcsOpenComputeSystem(PCWSTR id, DWORD requestedAccess, HCS_SYSTEM *computeSystem) {
  (void)requestedAccess;
  const char *fn = "HcsOpenComputeSystem";
  std::string sid = id ? utf16ToUtf8(id) : std::string();
  const std::string *tid = id ? &sid : nullptr;
  HRESULT hr = HCS_S_OK;
  if (computeSystem) *computeSystem = nullptr;
  if (!id) hr = HCS_E_INVALIDARG;
  else if (!computeSystem) hr = HCS_E_POINTER;
  if (hr >= 0) {
    FaultHit f = matchFault(fn, nullptr);
    if (f.hit) hr = f.hr;
  }
  if (hr >= 0) {
    Core &c = core();
    std::lock_guard<std::mutex> lock(c.modelMu);
    auto it = c.registry.find(sid);
    if (it == c.registry.end() || it->second->status != SystemRec::Status::Live) {
      hr = HCS_E_SYSTEM_NOT_FOUND;
    } else {
      it->second->handles++;
      *computeSystem = newSystemHandle(it->second);
    }
  }
  traceCall(fn, tid, nullptr, hr);
  return hr;
}

HCS_API void HCS_CALL HcsCloseComputeSystem(HCS_SYSTEM computeSystem) {
  const char *fn = "HcsCloseComputeSystem";
  SysHandlePtr h;
  {
    SysTable &t = sysTable();
    std::lock_guard<std::mutex> lock(t.m);
    auto it = t.handles.find(reinterpret_cast<uintptr_t>(computeSystem));
    if (it != t.handles.end()) {
      h = it->second;
      t.handles.erase(it);
    }
  }
  if (!h) {
    traceCall(fn, nullptr, nullptr, HCS_E_HANDLE);
    return;
  }
  removeEventSink(h->handle);
  {
    Core &c = core();
    std::lock_guard<std::mutex> lock(c.modelMu);
    h->rec->handles--;
    try {
      maybeUnregisterLocked(h->rec);
    } catch (const HcsFailure &) {
    }
  }
  traceCall(fn, &h->rec->id, nullptr, HCS_S_OK);
}

static HRESULT stateCall(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options, const char *fn) {
  DocumentPtr doc = docArg(options);
  SysHandlePtr h = systemForCall(fn, computeSystem, doc.get());
  if (!h) return HCS_E_HANDLE;
  SystemRecPtr rec = h->rec;
  std::string name = fn;
  DocumentPtr captured = doc;
  return launch(operation, fn, rec, doc, [rec, captured, name](const FaultHit &fault) {
    failWithFault(fault);
    OpOutcome out = transition(rec, *captured, name.c_str());
    // The system stopped: SystemExited to every handle with a callback (on another thread).
    if (name != "HcsStartComputeSystem") raiseClientExit(rec, name == "HcsTerminateComputeSystem");
    // Started: the guest boots and dials the host's hvsocket listeners; stopped: its connections close.
    if (name == "HcsStartComputeSystem") gcsVmStarted(rec);
    else gcsPoke();
    return out;
  });
}

HCS_API HRESULT HCS_CALL HcsStartComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options) {
  return stateCall(computeSystem, operation, options, "HcsStartComputeSystem");
}

HCS_API HRESULT HCS_CALL HcsShutDownComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options) {
  return stateCall(computeSystem, operation, options, "HcsShutDownComputeSystem");
}

HCS_API HRESULT HCS_CALL HcsTerminateComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options) {
  return stateCall(computeSystem, operation, options, "HcsTerminateComputeSystem");
}

HCS_API HRESULT HCS_CALL HcsGetComputeSystemProperties(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
                                                       PCWSTR propertyQuery) {
  const char *fn = "HcsGetComputeSystemProperties";
  DocumentPtr doc = docArg(propertyQuery);
  SysHandlePtr h = systemForCall(fn, computeSystem, doc.get());
  if (!h) return HCS_E_HANDLE;
  SystemRecPtr rec = h->rec;
  DocumentPtr captured = doc;
  OpWork work = [rec, captured](const FaultHit &fault) -> OpOutcome {
    failWithFault(fault);
    bool simState = false, testHelper = false;
    if (captured->present()) {
      requireParsed(*captured, "the property query");
      const Json &q = captured->json();
      if (!q.isObject()) invalidJson("property query: expected an object");
      for (const auto &m : q.members()) {
        if (m.first == "PropertyTypes") {
          if (m.second.isNull()) continue;
          if (!m.second.isArray()) invalidJson("property query.PropertyTypes: expected an array");
          for (const auto &t : m.second.items()) {
            if (!t.isString()) invalidJson("property query.PropertyTypes: expected an array of strings");
            if (t.asString() == "SimulatorState") simState = true;
            else invalidJson("property query.PropertyTypes: unknown or unsupported property type \"" + t.asString() + "\"");
          }
        } else if (m.first == "PropertyQueries") {
          if (!m.second.isObject() && !m.second.isNull()) invalidJson("property query.PropertyQueries: expected an object");
          // {"SimulatorState": {"Caller": "TestHelper"}} marks a test helper's inventory read.
          const Json *sq = m.second.isObject() ? m.second.get("SimulatorState") : nullptr;
          const Json *caller = sq && sq->isObject() ? sq->get("Caller") : nullptr;
          if (caller && caller->isString() && caller->asString() == "TestHelper") testHelper = true;
        } else {
          invalidJson("property query: unknown field \"" + m.first + "\"");
        }
      }
    }
    // Real HCS has no property listing attached devices: count who asks for the simulator's.
    if (simState) countInventoryQuery(testHelper);
    Core &c = core();
    std::lock_guard<std::mutex> lock(c.modelMu);
    checkLiveLocked(rec.get());
    Json props = standardProperties(rec->sys);
    if (simState) {
      Json st = simulatorStateDevicesAndGuest(rec->sys);
      st.set("VmAccess", grantsForLocked(rec->id));
      st.set("HotAdded", Json::number(static_cast<double>(hotAddedCount(rec->sys))));
      props.set("SimulatorState", st);
    }
    OpOutcome out;
    out.doc = toJson(props);
    return out;
  };
  return launch(operation, fn, rec, doc, std::move(work));
}

HCS_API HRESULT HCS_CALL HcsModifyComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR configuration,
                                                HANDLE identity) {
  (void)identity;
  const char *fn = "HcsModifyComputeSystem";
  DocumentPtr doc = docArg(configuration);
  SysHandlePtr h = systemForCall(fn, computeSystem, doc.get());
  if (!h) return HCS_E_HANDLE;
  SystemRecPtr rec = h->rec;
  if (!configuration) {
    traceCall(fn, &rec->id, nullptr, HCS_E_INVALIDARG);
    return HCS_E_INVALIDARG;
  }
  // The operation keeps the document and the record (launch): plain pointers here.
  OpWork work = [rec = rec.get(), captured = doc.get()](const FaultHit &fault) -> OpOutcome {
    // Parsed, and the request's own shape checked, here, outside the model lock (the pool's threads
    // queue on it); a shape error is reported below in its place, after the checks that need the model.
    ModifyShape shape;
    std::exception_ptr shapeError;
    if (captured->valid()) {
      try {
        checkModifyShape(captured->json(), shape);
      } catch (...) {
        shapeError = std::current_exception();
      }
    }
    Core &c = core();
    std::lock_guard<std::mutex> lock(c.modelMu);
    failWithFault(fault);
    checkLiveLocked(rec);
    if (!captured->present()) invalidJson("the modify request is empty");
    requireParsed(*captured, "the modify request");
    if (rec->sys.state != "Running")
      fail(HCS_E_INVALID_STATE, "compute system " + rec->id + " is not running (state " + rec->sys.state + ")");
    // Without VirtualMachine.GuestConnection HCS holds no connection to the guest to forward a
    // GuestRequest over (the shim owns the GCS bridge): refused, nothing applied (docs/hcs.md).
    if (refuseGuestRequestWithoutGuestConnection() && !rec->sys.guestConnection && captured->json().isObject() &&
        hasGuestPart(captured->json()))
      fail(HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION,
           "compute system " + rec->id + " has no GuestConnection: HCS cannot deliver a GuestRequest (the GCS bridge belongs to the caller)");
    HcsFailure guestFault{fault.hr, fault.message};
    struct Saver {
      ~Saver() {
        try {
          saveStateLocked();
        } catch (...) {
        }
      }
    } saver;  // the host half may have been applied even if the guest half fails
    if (shapeError) std::rethrow_exception(shapeError);
    applyModifyShape(rec->sys, shape, fault.hit && fault.guestOnly ? &guestFault : nullptr);
    return OpOutcome{};
  };
  return launch(operation, fn, rec, doc, std::move(work));
}

HCS_API HRESULT HCS_CALL HcsSetComputeSystemCallback(HCS_SYSTEM computeSystem, uint32_t callbackOptions,
                                                     const void *context, HCS_EVENT_CALLBACK callback) {
  const char *fn = "HcsSetComputeSystemCallback";
  SysHandlePtr h = systemForCall(fn, computeSystem, nullptr);
  if (!h) return HCS_E_HANDLE;
  HRESULT hr = HCS_S_OK;
  FaultHit f = matchFault(fn, nullptr);
  if (f.hit) hr = f.hr;
  if (hr >= 0) {
    SysTable &t = sysTable();
    std::lock_guard<std::mutex> lock(t.m);
    if (h->eventCallback && callback) {
      hr = HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET;
    } else {
      h->eventCallback = callback;
      h->eventContext = context;
      h->eventOptions = callbackOptions;
      setEventSink(h->handle, h->rec, callback, context);
    }
  }
  traceCall(fn, &h->rec->id, nullptr, hr);
  return hr;
}

HCS_API HRESULT HCS_CALL HcsEnumerateComputeSystems(PCWSTR query, HCS_OPERATION operation) {
  const char *fn = "HcsEnumerateComputeSystems";
  DocumentPtr doc = docArg(query);
  DocumentPtr captured = doc;
  OpWork work = [captured](const FaultHit &fault) -> OpOutcome {
    failWithFault(fault);
    std::vector<std::string> ids, owners, types;
    bool hasIds = false, hasOwners = false, hasTypes = false;
    if (captured->present()) {
      requireParsed(*captured, "the enumeration query");
      if (!captured->json().isObject()) invalidJson("enumeration query: expected an object");
      for (const auto &m : captured->json().members()) {
        std::vector<std::string> *target;
        if (m.first == "Ids") {
          target = &ids;
          hasIds = true;
        } else if (m.first == "Owners") {
          target = &owners;
          hasOwners = true;
        } else if (m.first == "Types") {
          target = &types;
          hasTypes = true;
        } else if (m.first == "Names") {
          target = &ids;
          hasIds = true;
        } else {
          invalidJson("enumeration query: unknown field \"" + m.first + "\"");
        }
        if (m.second.isNull()) continue;
        if (!m.second.isArray()) invalidJson("enumeration query." + m.first + ": expected an array of strings");
        for (const auto &v : m.second.items()) {
          if (!v.isString()) invalidJson("enumeration query." + m.first + ": expected an array of strings");
          target->push_back(v.asString());
        }
      }
    }
    auto contains = [](const std::vector<std::string> &v, const std::string &s) {
      for (const auto &x : v)
        if (x == s) return true;
      return false;
    };
    Json list = Json::array();
    Core &c = core();
    std::lock_guard<std::mutex> lock(c.modelMu);
    for (const auto &e : c.registry) {
      const System &sys = e.second->sys;
      if (e.second->status != SystemRec::Status::Live) continue;
      if (hasIds && !ids.empty() && !contains(ids, sys.id)) continue;
      if (hasOwners && !owners.empty() && !(sys.hasOwner && contains(owners, sys.owner))) continue;
      if (hasTypes && !types.empty() && !contains(types, "VirtualMachine")) continue;
      list.push(standardProperties(sys));
    }
    OpOutcome out;
    out.doc = toJson(list);
    return out;
  };
  return launch(operation, fn, nullptr, doc, std::move(work));
}

// ------------------------------------------------------------------------------------------------
// VM access

static HRESULT grantCall(PCWSTR vmId, PCWSTR filePath, bool grant) {
  const char *fn = grant ? "HcsGrantVmAccess" : "HcsRevokeVmAccess";
  std::string vm = vmId ? utf16ToUtf8(vmId) : std::string();
  Json doc = Json::object();
  if (filePath) doc.set("Path", Json::string(utf16ToUtf8(filePath)));
  HRESULT hr = HCS_S_OK;
  if (!vmId || !filePath || vm.empty()) hr = HCS_E_INVALIDARG;
  if (hr >= 0) {
    FaultHit f = matchFault(fn, nullptr);
    if (f.hit) hr = f.hr;
  }
  if (hr >= 0) {
    std::string path = utf16ToUtf8(filePath);
    Core &c = core();
    std::lock_guard<std::mutex> lock(c.modelMu);
    auto it = c.grants.begin();
    for (; it != c.grants.end(); ++it)
      if (it->first == vm && it->second == path) break;
    if (grant) {
      if (it == c.grants.end()) c.grants.emplace_back(vm, path);
    } else if (it == c.grants.end()) {
      hr = HCS_E_NOT_FOUND;
    } else {
      c.grants.erase(it);
    }
    if (hr >= 0) {
      try {
        saveStateLocked();
      } catch (const HcsFailure &f) {
        hr = f.hr;
      }
    }
  }
  traceCall(fn, vmId ? &vm : nullptr, &doc, hr);
  return hr;
}

HCS_API HRESULT HCS_CALL HcsGrantVmAccess(PCWSTR vmId, PCWSTR filePath) { return grantCall(vmId, filePath, true); }

HCS_API HRESULT HCS_CALL HcsRevokeVmAccess(PCWSTR vmId, PCWSTR filePath) { return grantCall(vmId, filePath, false); }

// ------------------------------------------------------------------------------------------------
// kernel32 / vmcompute

HCS_API HLOCAL HCS_CALL LocalFree(HLOCAL memory) {
  std::free(memory);
  return nullptr;
}

HCS_API HRESULT HCS_CALL NameToGuid(PCWSTR name, GUID *guid) {
  const char *fn = "NameToGuid";
  Json doc = Json::object();
  std::string n = name ? utf16ToUtf8(name) : std::string();
  if (name) doc.set("Name", Json::string(n));
  HRESULT hr = HCS_S_OK;
  if (!name) hr = HCS_E_INVALIDARG;
  else if (!guid) hr = HCS_E_POINTER;
  if (hr >= 0) {
    FaultHit f = matchFault(fn, nullptr);
    if (f.hit) hr = f.hr;
  }
  if (hr >= 0) {
    static const UuidBytes ns = {0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1,
                                 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8};
    *guid = uuidToGuid(uuidV5(ns, n));
  }
  traceCall(fn, nullptr, &doc, hr);
  return hr;
}

// ------------------------------------------------------------------------------------------------
// Simulator control

HCS_API HRESULT HCS_CALL HcsSimQuery(PWSTR *result) {
  if (!result) return HCS_E_POINTER;
  *result = nullptr;
  try {
    std::u16string doc = utf8ToUtf16(simulatorStatsJson());
    auto *buf = static_cast<char16_t *>(std::malloc((doc.size() + 1) * sizeof(char16_t)));
    if (!buf) return HCS_E_OUTOFMEMORY;
    std::memcpy(buf, doc.data(), doc.size() * sizeof(char16_t));
    buf[doc.size()] = 0;
    *result = buf;
    return HCS_S_OK;
  } catch (...) {
    return HCS_E_OUTOFMEMORY;
  }
}

HCS_API HRESULT HCS_CALL HcsSimConfigure(PCWSTR json) {
  if (!json) return HCS_E_INVALIDARG;
  std::string err;
  HRESULT hr = applyConfig(utf16ToUtf8(json), err);
  if (hr < 0) {
    const char *verbose = std::getenv("HCSSIM_VERBOSE");
    if (verbose && *verbose && *verbose != '0') std::fprintf(stderr, "hcssim: HcsSimConfigure: %s\n", err.c_str());
  }
  return hr;
}

}  // extern "C"

namespace {
__attribute__((constructor)) void hcssimLoad() { applyEnvironmentConfig(); }
}  // namespace
