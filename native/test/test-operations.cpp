// Operation semantics, compute-system lifecycle and properties through the C API.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "harness.h"
#include "uuid.h"

using hcssim::Json;

namespace {
struct CallbackProbe {
  std::mutex m;
  std::condition_variable cv;
  int calls = 0;
  HCS_OPERATION seen = nullptr;
  HRESULT hrInside = 0;
  std::string docInside;
  std::thread::id thread;
};

void HCS_CALL probeCallback(HCS_OPERATION op, void *ctx) {
  auto *p = static_cast<CallbackProbe *>(ctx);
  // calls back into the library from inside the callback
  PWSTR doc = nullptr;
  HRESULT hr = HcsGetOperationResult(op, &doc);
  std::string d = doc ? hcssim::utf16ToUtf8(doc) : std::string();
  if (doc) LocalFree(doc);
  HcsCloseOperation(op);
  std::lock_guard<std::mutex> lock(p->m);
  p->calls++;
  p->seen = op;
  p->hrInside = hr;
  p->docInside = d;
  p->thread = std::this_thread::get_id();
  p->cv.notify_all();
}

bool waitCalls(CallbackProbe &p, int n, int ms = 5000) {
  std::unique_lock<std::mutex> lock(p.m);
  return p.cv.wait_for(lock, std::chrono::milliseconds(ms), [&] { return p.calls >= n; });
}
}  // namespace

TEST(lifecycle_and_properties) {
  HCS_SYSTEM sys = t::createSystem("vm-1", t::lcowDoc());
  CHECK(sys != nullptr);
  auto q = t::u16("");
  t::Result r = t::run([&](HCS_OPERATION op) { return HcsGetComputeSystemProperties(sys, op, nullptr); });
  CHECK_HR(r.hr, 0);
  Json p = r.json();
  CHECK_EQ(p.get("Id")->asString(), std::string("vm-1"));
  CHECK_EQ(p.get("State")->asString(), std::string("Created"));
  CHECK_EQ(p.get("SystemType")->asString(), std::string("VirtualMachine"));
  CHECK_EQ(p.get("Owner")->asString(), std::string("test"));
  CHECK(p.get("SimulatorState") == nullptr);
  // RuntimeId: a fresh lowercase GUID per create, distinct from the system id, stable per system
  const Json *rid = p.get("RuntimeId");
  CHECK(rid && rid->isString() && hcssim::canonicalGuid(rid->asString()) == rid->asString());
  std::string runtimeId = rid ? rid->asString() : std::string();
  // modify before start -> invalid state
  t::Result m = t::modify(sys, R"({"ResourcePath":"VirtualMachine/Devices/Plan9/Shares","RequestType":"Add","Settings":{"Name":"0","Path":"C:\\x","Port":564}})");
  CHECK_HR(m.hr, HCS_E_INVALID_STATE);
  CHECK(m.json().get("Error")->asInt() == HCS_E_INVALID_STATE);
  CHECK_HR(t::run([&](HCS_OPERATION op) { return HcsStartComputeSystem(sys, op, nullptr); }).hr, 0);
  CHECK_HR(t::run([&](HCS_OPERATION op) { return HcsStartComputeSystem(sys, op, nullptr); }).hr, HCS_E_INVALID_STATE);
  // duplicate id
  t::createSystem("vm-1", t::lcowDoc(), HCS_E_SYSTEM_ALREADY_EXISTS);
  // open a second handle
  HCS_SYSTEM h2 = nullptr;
  auto id = t::u16("vm-1");
  CHECK_HR(HcsOpenComputeSystem(id.c_str(), HCS_GENERIC_ALL, &h2), 0);
  auto nope = t::u16("nope");
  HCS_SYSTEM h3 = nullptr;
  CHECK_HR(HcsOpenComputeSystem(nope.c_str(), HCS_GENERIC_ALL, &h3), HCS_E_SYSTEM_NOT_FOUND);
  // enumerate
  t::Result e = t::run([&](HCS_OPERATION op) { return HcsEnumerateComputeSystems(nullptr, op); });
  CHECK_HR(e.hr, 0);
  Json list = e.json();
  CHECK(list.isArray() && list.items().size() == 1);
  CHECK_EQ(list.items()[0].get("State")->asString(), std::string("Running"));
  CHECK_EQ(list.items()[0].get("RuntimeId")->asString(), runtimeId);
  // terminate, then terminate again
  CHECK_HR(t::run([&](HCS_OPERATION op) { return HcsTerminateComputeSystem(h2, op, nullptr); }).hr, 0);
  CHECK_HR(t::run([&](HCS_OPERATION op) { return HcsShutDownComputeSystem(sys, op, nullptr); }).hr, HCS_E_SYSTEM_ALREADY_STOPPED);
  // still registered while handles are open
  HCS_SYSTEM h4 = nullptr;
  CHECK_HR(HcsOpenComputeSystem(id.c_str(), HCS_GENERIC_ALL, &h4), 0);
  HcsCloseComputeSystem(h4);
  HcsCloseComputeSystem(h2);
  HcsCloseComputeSystem(sys);
  CHECK_HR(HcsOpenComputeSystem(id.c_str(), HCS_GENERIC_ALL, &h4), HCS_E_SYSTEM_NOT_FOUND);
  // closed handle
  CHECK_HR(t::run([&](HCS_OPERATION op) { return HcsStartComputeSystem(sys, op, nullptr); }).hr, HCS_E_HANDLE);
}

TEST(create_validation) {
  const char *bad[] = {
      "not json",
      "[]",
      R"({"VirtualMachine":{}})",
      R"({"SchemaVersion":{"Major":"2","Minor":1},"VirtualMachine":{}})",
      R"({"SchemaVersion":{"Major":2,"Minor":1}})",
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},"Devices":[]}})",
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},"Devices":{"Scsi":{"nope":{}}}}})",
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},"Devices":{"Scsi":{"df6d0690-79e5-55b6-a5ec-c1e2f77f580a":{"Attachments":{"0":{"Type":"Floppy","Path":"x"}}}}}}})",
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},"Devices":{"Scsi":{"df6d0690-79e5-55b6-a5ec-c1e2f77f580a":{"Attachments":{"0":{"Type":"VirtualDisk"}}}}}}})",
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},"Devices":{"VirtualPMem":{"MaximumCount":"4"}}}})",
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},"Devices":{"VirtualSmb":{"Shares":{}}}}})",
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},"Devices":{"Plan9":{"Shares":[{"Name":"0"}]}}}})",
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},"Devices":{"VirtualPMem":{"MaximumCount":4,"Bogus":1}}}})",
  };
  int i = 0;
  for (const char *doc : bad) {
    HCS_SYSTEM s = t::createSystem("bad-" + std::to_string(i++), doc, HCS_E_INVALID_JSON);
    if (s) HcsCloseComputeSystem(s);
  }
  const char *badValues[] = {
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},"Devices":{"VirtualPMem":{"MaximumCount":129}}}})",
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},"Devices":{"VirtualPMem":{"MaximumCount":4,"MaximumSizeBytes":4097}}}})",
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},"Devices":{"Scsi":{"df6d0690-79e5-55b6-a5ec-c1e2f77f580a":{"Attachments":{"64":{"Type":"VirtualDisk","Path":"x"}}}}}}})",
  };
  for (const char *doc : badValues) {
    HCS_SYSTEM s = t::createSystem("badv-" + std::to_string(i++), doc, HCS_E_INVALIDARG);
    if (s) HcsCloseComputeSystem(s);
  }
  // a failed create leaves nothing behind and its handle reports not-found
  HCS_SYSTEM s = t::createSystem("failed", "{}", HCS_E_INVALID_JSON);
  CHECK_HR(t::run([&](HCS_OPERATION op) { return HcsStartComputeSystem(s, op, nullptr); }).hr, HCS_E_SYSTEM_NOT_FOUND);
  HcsCloseComputeSystem(s);
  t::Result e = t::run([&](HCS_OPERATION op) { return HcsEnumerateComputeSystems(nullptr, op); });
  CHECK_EQ(e.json().items().size(), static_cast<size_t>(0));
  // unknown Devices keys are ignored; known ones with the wrong type are rejected
  HCS_SYSTEM ok = t::createSystem("ok", R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},"Devices":{"ComPorts":{"0":{}},"Keyboard":{}}}})");
  HcsCloseComputeSystem(ok);
}

TEST(create_chipset) {
  // Stricter than HCS: a VM document without a Chipset is refused (nothing could boot).
  const char *bad[] = {
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{}})",
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":[]}})",
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"LinuxKernelDirect":{}}}})",
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"LinuxKernelDirect":{"KernelFilePath":"k","Bogus":1}}}})",
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{"BootThis":{"DeviceType":"Floppy"}}}}})",
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{"BootThis":{"DeviceType":"VmbFs"}}}}})",
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{},"LinuxKernelDirect":{"KernelFilePath":"k"}}}})",
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},"ComputeTopology":{"Memory":{}}}})",
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},"ComputeTopology":{"Processor":{"Count":0}}}})",
  };
  int i = 0;
  for (const char *doc : bad) {
    HCS_SYSTEM s = t::createSystem("chipset-" + std::to_string(i++), doc, HCS_E_INVALID_JSON);
    if (s) HcsCloseComputeSystem(s);
  }
  // As real HCS: a 2.1 document may use later fields (LinuxKernelDirect 2.2, LowMmioGapInMB
  // 2.3, Uefi.StopOnBootFailure 2.2) — hcsshim ships exactly that.
  const char *good[] = {
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}}}})",
      R"J({"SchemaVersion":{"Major":2,"Minor":1},"ShouldTerminateOnLastHandleClosed":true,"VirtualMachine":{"StopOnReset":true,"Chipset":{"LinuxKernelDirect":{"KernelFilePath":"C:\\b\\vmlinux","InitRdPath":"C:\\b\\initrd.img","KernelCmdLine":" quiet"}},"ComputeTopology":{"Memory":{"SizeInMB":1024,"AllowOvercommit":true,"LowMmioGapInMB":256},"Processor":{"Count":2}},"Devices":{"HvSocket":{"HvSocketConfig":{"DefaultBindSecurityDescriptor":"D:P(A;;FA;;;SY)(A;;FA;;;BA)"}},"Plan9":{}}}})J",
      R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{"StopOnBootFailure":true,"BootThis":{"DeviceType":"VmbFs","DevicePath":"\\kernel","VmbFsRootPath":"C:\\b","OptionalData":"x"}}}}})",
  };
  for (const char *doc : good) {
    HCS_SYSTEM s = t::createSystem("chipset-ok-" + std::to_string(i++), doc);
    CHECK(s != nullptr);
    if (s) HcsCloseComputeSystem(s);
  }
}

TEST(operation_state_errors) {
  HCS_OPERATION op = HcsCreateOperation(nullptr, nullptr);
  CHECK(op != nullptr);
  PWSTR doc = reinterpret_cast<PWSTR>(1);
  CHECK_HR(HcsGetOperationResult(op, &doc), HCS_E_OPERATION_NOT_STARTED);
  CHECK(doc == nullptr);
  CHECK_HR(HcsWaitForOperationResult(op, 10, nullptr), HCS_E_OPERATION_NOT_STARTED);
  t::configure(R"({"latencyMs": 200})");
  CHECK_HR(HcsEnumerateComputeSystems(nullptr, op), 0);
  CHECK_HR(HcsEnumerateComputeSystems(nullptr, op), HCS_E_OPERATION_ALREADY_STARTED);
  CHECK_HR(HcsGetOperationResult(op, &doc), HCS_E_OPERATION_PENDING);
  auto t0 = std::chrono::steady_clock::now();
  CHECK_HR(HcsWaitForOperationResult(op, 20, &doc), HCS_E_OPERATION_TIMEOUT);
  CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(19));
  CHECK_HR(HcsWaitForOperationResult(op, HCS_INFINITE, &doc), 0);
  CHECK(doc != nullptr);
  if (doc) CHECK_EQ(hcssim::utf16ToUtf8(doc), std::string("[]"));
  LocalFree(doc);
  CHECK_HR(HcsCancelOperation(op), HCS_E_NOTIMPL);  // documented: never implemented
  CHECK_HR(HcsWaitForOperationResult(op, 0, nullptr), 0);
  HcsCloseOperation(op);
  CHECK_HR(HcsGetOperationResult(op, nullptr), HCS_E_HANDLE);
  CHECK_HR(HcsCancelOperation(op), HCS_E_NOTIMPL);
  CHECK_HR(HcsSetOperationCallback(op, nullptr, nullptr), HCS_E_HANDLE);
  HcsCloseOperation(op);  // double close is harmless
  CHECK_HR(HcsEnumerateComputeSystems(nullptr, nullptr), HCS_E_HANDLE);
}

TEST(completion_callback_on_worker_thread) {
  t::configure(R"({"latencyMs": 5})");
  CallbackProbe probe;
  HCS_OPERATION op = HcsCreateOperation(&probe, probeCallback);
  CHECK_HR(HcsEnumerateComputeSystems(nullptr, op), 0);
  CHECK(waitCalls(probe, 1));
  CHECK_EQ(probe.calls, 1);
  CHECK(probe.seen == op);
  CHECK_HR(probe.hrInside, 0);
  CHECK_EQ(probe.docInside, std::string("[]"));
  CHECK(probe.thread != std::this_thread::get_id());
  // SetOperationCallback before start
  CallbackProbe p2;
  HCS_OPERATION op2 = HcsCreateOperation(nullptr, nullptr);
  CHECK_HR(HcsSetOperationCallback(op2, &p2, probeCallback), 0);
  HCS_SYSTEM s = nullptr;
  auto id = t::u16("cb");
  auto doc = t::u16("{bad");
  CHECK_HR(HcsCreateComputeSystem(id.c_str(), doc.c_str(), op2, nullptr, &s), 0);
  CHECK_HR(HcsSetOperationCallback(op2, &p2, probeCallback), HCS_E_OPERATION_ALREADY_STARTED);
  CHECK(waitCalls(p2, 1));
  CHECK_HR(p2.hrInside, HCS_E_INVALID_JSON);
  Json err;
  std::string e;
  CHECK(hcssim::parseJson(p2.docInside, err, e));
  CHECK(err.get("Error") && err.get("Error")->asInt() == HCS_E_INVALID_JSON);
  CHECK(err.get("ErrorMessage") && err.get("ErrorMessage")->isString());
  const Json *events = err.get("ErrorEvents");
  CHECK(events && events->isArray() && events->items().size() == 1);
  if (events && events->items().size() == 1) {
    CHECK_EQ(events->items()[0].get("Provider")->asString(), std::string("hcssim"));
    CHECK_EQ(events->items()[0].get("Source")->asString(), std::string("HcsCreateComputeSystem"));
  }
  HcsCloseComputeSystem(s);
}

TEST(cancel_and_close_pending) {
  t::configure(R"({"latencyMs": 300})");
  t::configure(R"({"cancel":"honoured"})");  // the simulator's deviation from HCS, for tests
  CallbackProbe probe;
  HCS_OPERATION op = HcsCreateOperation(&probe, probeCallback);
  CHECK_HR(HcsCancelOperation(op), HCS_E_OPERATION_NOT_STARTED);
  HCS_SYSTEM s = nullptr;
  auto id = t::u16("cancelled");
  auto doc = t::u16(t::lcowDoc());
  CHECK_HR(HcsCreateComputeSystem(id.c_str(), doc.c_str(), op, nullptr, &s), 0);
  CHECK_HR(HcsCancelOperation(op), 0);
  CHECK(waitCalls(probe, 1, 200));  // completes promptly, not after the latency
  CHECK_HR(probe.hrInside, E_ABORT_HR);
  // the create was not applied
  HCS_SYSTEM h = nullptr;
  CHECK_HR(HcsOpenComputeSystem(id.c_str(), HCS_GENERIC_ALL, &h), HCS_E_SYSTEM_NOT_FOUND);
  HcsCloseComputeSystem(s);
  // closing a pending operation detaches its callback
  CallbackProbe p2;
  HCS_OPERATION op2 = HcsCreateOperation(&p2, probeCallback);
  t::configure(R"({"latencyMs": 20})");
  CHECK_HR(HcsEnumerateComputeSystems(nullptr, op2), 0);
  HcsCloseOperation(op2);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  CHECK_EQ(p2.calls, 0);
  t::configure(R"({"cancel":"notImplemented"})");
}

TEST(handle_and_argument_errors) {
  HCS_SYSTEM bogus = reinterpret_cast<HCS_SYSTEM>(0x1234);
  HCS_OPERATION op = HcsCreateOperation(nullptr, nullptr);
  CHECK_HR(HcsStartComputeSystem(bogus, op, nullptr), HCS_E_HANDLE);
  CHECK_HR(HcsModifyComputeSystem(bogus, op, u"{}", nullptr), HCS_E_HANDLE);
  CHECK_HR(HcsGetComputeSystemProperties(bogus, op, nullptr), HCS_E_HANDLE);
  CHECK_HR(HcsSetComputeSystemCallback(bogus, 0, nullptr, nullptr), HCS_E_HANDLE);
  HCS_SYSTEM s = nullptr;
  CHECK_HR(HcsCreateComputeSystem(nullptr, u"{}", op, nullptr, &s), HCS_E_INVALIDARG);
  CHECK_HR(HcsCreateComputeSystem(u"x", nullptr, op, nullptr, &s), HCS_E_INVALIDARG);
  CHECK_HR(HcsCreateComputeSystem(u"x", u"{}", op, nullptr, nullptr), HCS_E_POINTER);
  CHECK_HR(HcsOpenComputeSystem(u"x", HCS_GENERIC_ALL, nullptr), HCS_E_POINTER);
  CHECK_HR(HcsGetOperationResult(op, nullptr), HCS_E_OPERATION_NOT_STARTED);  // untouched by the failures
  HcsCloseOperation(op);
  HcsCloseComputeSystem(bogus);  // no crash
  CHECK(LocalFree(nullptr) == nullptr);
}

TEST(grants) {
  auto vm = t::u16("vm");
  auto path = t::u16("C:\\scratch \"q\"\\sandbox.vhdx");
  CHECK_HR(HcsGrantVmAccess(vm.c_str(), path.c_str()), 0);
  CHECK_HR(HcsGrantVmAccess(vm.c_str(), path.c_str()), 0);  // idempotent
  HCS_SYSTEM s = t::createRunning("vm", t::lcowDoc());
  Json st = t::simState(s);
  const Json *access = st.get("VmAccess");
  CHECK(access && access->items().size() == 1);
  if (access && access->items().size() == 1)
    CHECK(hcssim::utf8ToUtf16(access->items()[0].get("Path")->asString()) == path);
  CHECK_HR(HcsRevokeVmAccess(vm.c_str(), path.c_str()), 0);
  CHECK_HR(HcsRevokeVmAccess(vm.c_str(), path.c_str()), HCS_E_NOT_FOUND);
  CHECK_HR(HcsGrantVmAccess(nullptr, path.c_str()), HCS_E_INVALIDARG);
  CHECK_EQ(t::simState(s).get("VmAccess")->items().size(), static_cast<size_t>(0));
  HcsCloseComputeSystem(s);
}

namespace {
std::string runtimeIdOf(HCS_SYSTEM sys) {
  t::Result r = t::run([&](HCS_OPERATION op) { return HcsGetComputeSystemProperties(sys, op, nullptr); });
  Json props = r.hr == 0 ? r.json() : Json();
  const Json *rid = props.isObject() ? props.get("RuntimeId") : nullptr;
  return rid && rid->isString() ? rid->asString() : std::string();
}
}  // namespace

TEST(runtime_id_fresh_per_create) {
  HCS_SYSTEM a = t::createSystem("vm-a", t::lcowDoc());
  HCS_SYSTEM b = t::createSystem("vm-b", t::wcowDoc());
  std::string ra = runtimeIdOf(a), rb = runtimeIdOf(b);
  CHECK(!ra.empty() && !rb.empty() && ra != rb);
  CHECK(ra != "vm-a");
  CHECK_EQ(runtimeIdOf(a), ra);  // stable for the life of the system
  CHECK(ra.size() == 36 && ra[14] == '4');  // version 4 (random)
  CHECK_HR(t::run([&](HCS_OPERATION op) { return HcsTerminateComputeSystem(a, op, nullptr); }).hr, 0);
  HcsCloseComputeSystem(a);
  HcsCloseComputeSystem(b);
  // the same id created again is a new VM with a new RuntimeId
  t::reset();
  HCS_SYSTEM a2 = t::createSystem("vm-a", t::lcowDoc());
  CHECK(runtimeIdOf(a2) != ra);
  HcsCloseComputeSystem(a2);
}

TEST(guest_connection_in_create_document) {
  HCS_SYSTEM a = t::createSystem("vm-gc", t::withGuestConnection(t::lcowBridgeDoc(), R"({"UseVsock":true,"UseConnectedSuspend":true})"));
  CHECK(a != nullptr);
  HCS_SYSTEM w = t::createSystem("vm-gcw", t::withGuestConnection(t::wcowBridgeDoc(), "{}"));
  CHECK(w != nullptr);
  t::createSystem("vm-bad1", t::withGuestConnection(t::lcowBridgeDoc(), R"({"UseVsock":1})"), HCS_E_INVALID_JSON);
  t::createSystem("vm-bad2", t::withGuestConnection(t::lcowBridgeDoc(), R"({"Nope":true})"), HCS_E_INVALID_JSON);
  t::createSystem("vm-bad3", t::withGuestConnection(t::lcowBridgeDoc(), "true"), HCS_E_INVALID_JSON);
  HcsCloseComputeSystem(a);
  HcsCloseComputeSystem(w);
}

namespace {
// Calls["HcsCancelOperation"] as HcsSimQuery reports it (0 when absent).
int64_t cancelCalls() {
  PWSTR out = nullptr;
  if (HcsSimQuery(&out) != 0 || !out) return -1;
  Json q;
  std::string err;
  bool ok = hcssim::parseJson(hcssim::utf16ToUtf8(out), q, err);
  LocalFree(out);
  if (!ok || !q.get("Calls")) return -1;
  const Json *n = q.get("Calls")->get("HcsCancelOperation");
  return n ? n->asInt() : 0;
}
}  // namespace

TEST(call_counts_keep_threads_that_exit) {
  // Each thread counts into its own table; a thread that exits leaves its counts in the totals.
  int64_t before = cancelCalls();
  CHECK(before >= 0);
  for (int i = 0; i < 8; ++i) {
    std::thread([] {
      for (int k = 0; k < 3; ++k) HcsCancelOperation(nullptr);
    }).join();
  }
  HcsCancelOperation(nullptr);
  CHECK_EQ(cancelCalls(), before + 25);
  std::vector<std::thread> together;
  for (int i = 0; i < 4; ++i) together.emplace_back([] { HcsCancelOperation(nullptr); });
  for (auto &t : together) t.join();
  CHECK_EQ(cancelCalls(), before + 29);
}
