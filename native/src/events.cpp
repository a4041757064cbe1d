#include "events.h"
#include "gcs.h"

#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "json.h"
#include "scheduler.h"

namespace hcssim {

namespace {

struct Sink {
  SystemRecPtr rec;
  HCS_EVENT_CALLBACK callback = nullptr;
  const void *context = nullptr;
};

struct Sinks {
  std::mutex m;
  std::unordered_map<uintptr_t, Sink> byHandle;
};

Sinks &sinks() {
  static Sinks *s = new Sinks();
  return *s;
}

// HcsEventSystemExited's status for an unexpected exit (HCS_E_UNEXPECTED_EXIT).
const HRESULT kUnexpectedExit = static_cast<HRESULT>(0x80370106);

}  // namespace

void setEventSink(uintptr_t handle, const SystemRecPtr &rec, HCS_EVENT_CALLBACK callback, const void *context) {
  Sinks &s = sinks();
  std::lock_guard<std::mutex> lock(s.m);
  if (!callback) {
    s.byHandle.erase(handle);
    return;
  }
  s.byHandle[handle] = Sink{rec, callback, context};
}

void removeEventSink(uintptr_t handle) {
  Sinks &s = sinks();
  std::lock_guard<std::mutex> lock(s.m);
  s.byHandle.erase(handle);
}

void raiseSystemEvent(const SystemRecPtr &rec, uint32_t type, const std::string &json, bool here) {
  std::vector<uintptr_t> handles;
  {
    Sinks &s = sinks();
    std::lock_guard<std::mutex> lock(s.m);
    for (const auto &e : s.byHandle)
      if (e.second.rec == rec) handles.push_back(e.first);
  }
  if (handles.empty()) return;
  auto deliver = [handles, type, json]() {
    std::u16string data = utf8ToUtf16(json);
    for (uintptr_t h : handles) {
      Sink sink;
      {
        Sinks &s = sinks();
        std::lock_guard<std::mutex> lock(s.m);
        auto it = s.byHandle.find(h);
        if (it == s.byHandle.end()) continue;  // closed meanwhile
        sink = it->second;
      }
      HCS_EVENT event{};
      event.Type = type;
      event.EventData = data.c_str();
      event.Operation = nullptr;
      sink.callback(&event, const_cast<void *>(sink.context));
    }
  };
  if (here) {
    deliver();
    return;
  }
  try {
    std::thread([deliver] {
      nameThread("hcssim-event");
      deliver();
    }).detach();
  } catch (...) {
    deliver();  // no thread available: deliver on this thread
  }
}

std::string systemExitDocument(HRESULT status, const std::string &exitType, const std::string &attributionRecord) {
  return "{\"Status\":" + std::to_string(status) + ",\"ExitType\":\"" + exitType + "\",\"Attribution\":[" + attributionRecord + "]}";
}

void raiseClientExit(const SystemRecPtr &rec, bool terminate) {
  const char *record = terminate ? R"({"SystemExit":{"Detail":"Terminate","Initiator":"Client"}})"
                                 : R"({"SystemExit":{"Detail":"Shutdown","Initiator":"Client"}})";
  raiseSystemEvent(rec, HcsEventSystemExited, systemExitDocument(0, terminate ? "ForcedExit" : "GracefulExit", record), true);
}

bool isKnownCrashAttribution(const std::string &a) {
  return a.empty() || a == "UnexpectedExit" || a == "GuestCrash" || a == "TripleFault" || a == "WorkerExit";
}

bool crashSystem(const std::string &id, const std::string &attribution, std::string &error, bool here) {
  if (!isKnownCrashAttribution(attribution)) {
    error = "crash: unknown attribution \"" + attribution + "\"";
    return false;
  }
  SystemRecPtr rec;
  {
    Core &c = core();
    std::lock_guard<std::mutex> lock(c.modelMu);
    auto it = c.registry.find(id);
    if (it == c.registry.end() || it->second->status != SystemRec::Status::Live) {
      error = "crash: no compute system " + id;
      return false;
    }
    rec = it->second;
    if (rec->sys.state == "Stopped") {
      error = "crash: compute system " + id + " is already stopped";
      return false;
    }
    rec->sys.state = "Stopped";
    try {
      saveStateLocked();
      maybeUnregisterLocked(rec);
    } catch (const HcsFailure &) {
      // the crash happened either way
    }
  }
  gcsPoke();  // the guest's connections close with the VM
  std::string record = attribution.empty() || attribution == "UnexpectedExit"
                           ? R"({"SystemExit":{"Detail":"UnexpectedExit","Initiator":"Internal"}})"
                           : "{\"" + attribution + "\":{}}";
  raiseSystemEvent(rec, HcsEventSystemExited, systemExitDocument(kUnexpectedExit, "UnexpectedExit", record), here);
  return true;
}

}  // namespace hcssim
