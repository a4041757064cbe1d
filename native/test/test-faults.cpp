// Fault injection and simulator controls.
#include <chrono>
#include <thread>

#include "harness.h"

using hcssim::Json;

namespace {
std::string plan9Add(const std::string &name) {
  return R"({"ResourcePath":"VirtualMachine/Devices/Plan9/Shares","RequestType":"Add","Settings":{"Name":")" + name +
         R"(","Path":"C:\\d","Port":564}})";
}
std::string scsiWithGuest(int lun) {
  return std::string(R"({"ResourcePath":"VirtualMachine/Devices/Scsi/)") + t::kCtrl0 + "/Attachments/" + std::to_string(lun) +
         R"(","RequestType":"Add","Settings":{"Type":"VirtualDisk","Path":"C:\\s.vhdx"},"GuestRequest":{"RequestType":"Add","ResourceType":"MappedVirtualDisk","Settings":{"MountPath":"/m)" +
         std::to_string(lun) + R"(","Lun":)" + std::to_string(lun) + "}}}";
}
}  // namespace

TEST(fault_nth_call) {
  HCS_SYSTEM s = t::createRunning("f1", t::lcowDoc());
  t::configure(R"({"faults":[{"fn":"HcsModifyComputeSystem","nth":2,"hr":-2147024891,"message":"denied"}]})");
  CHECK_HR(t::modify(s, plan9Add("a")).hr, 0);
  t::Result r = t::modify(s, plan9Add("b"));
  CHECK_HR(r.hr, HCS_E_ACCESS_DENIED_WIN32);
  CHECK_EQ(r.json().get("ErrorMessage")->asString(), std::string("denied"));
  CHECK_HR(t::modify(s, plan9Add("b")).hr, 0);  // fires once
  Json st = t::simState(s);
  CHECK_EQ(st.get("Devices")->get("Plan9")->get("Shares")->items().size(), static_cast<size_t>(2));
  // every call, unsigned hr form, default fn with a resourcePath glob
  t::configure(R"({"faults":[{"resourcePath":"VirtualMachine/Devices/Scsi/*","hr":2147942405}]})");
  CHECK_HR(t::modify(s, plan9Add("c")).hr, 0);
  CHECK_HR(t::modify(s, scsiWithGuest(1)).hr, HCS_E_ACCESS_DENIED_WIN32);
  CHECK_HR(t::modify(s, scsiWithGuest(1)).hr, HCS_E_ACCESS_DENIED_WIN32);
  t::configure(R"({"clearFaults":true})");
  CHECK_HR(t::modify(s, scsiWithGuest(1)).hr, 0);
  // nth counted per matching call only
  t::configure(R"({"faults":[{"resourcePath":"*Plan9*","nth":2}]})");
  CHECK_HR(t::modify(s, scsiWithGuest(2)).hr, 0);
  CHECK_HR(t::modify(s, plan9Add("d")).hr, 0);
  CHECK_HR(t::modify(s, plan9Add("e")).hr, HCS_E_FAIL);
  CHECK_HR(t::modify(s, plan9Add("e")).hr, 0);
  HcsCloseComputeSystem(s);
}

TEST(fault_guest_only) {
  HCS_SYSTEM s = t::createRunning("f2", t::lcowDoc());
  t::configure(R"({"faults":[{"guestOnly":true,"hr":-2143878884,"nth":1}]})");
  CHECK_HR(t::modify(s, plan9Add("a")).hr, 0);  // no guest half: not counted
  CHECK_HR(t::modify(s, scsiWithGuest(3)).hr, HCS_E_GUEST_CRITICAL_ERROR);
  Json st = t::simState(s);
  CHECK(st.get("Devices")->get("Scsi")->get(t::kCtrl0)->get("Attachments")->get("3") != nullptr);
  CHECK_EQ(st.get("Guest")->get("MappedVirtualDisks")->items().size(), static_cast<size_t>(0));
  // the library's compensation: host-only Remove
  std::string remove = std::string(R"({"ResourcePath":"VirtualMachine/Devices/Scsi/)") + t::kCtrl0 + R"(/Attachments/3","RequestType":"Remove"})";
  CHECK_HR(t::modify(s, remove).hr, 0);
  CHECK_HR(t::modify(s, scsiWithGuest(3)).hr, 0);
  HcsCloseComputeSystem(s);
}

TEST(fault_hang_cancel_and_reset) {
  HCS_SYSTEM s = t::createRunning("f3", t::lcowDoc());
  t::configure(R"({"faults":[{"hang":true,"nth":1}]})");
  HCS_OPERATION op = HcsCreateOperation(nullptr, nullptr);
  auto doc = t::u16(plan9Add("hung"));
  CHECK_HR(HcsModifyComputeSystem(s, op, doc.c_str(), nullptr), 0);
  CHECK_HR(HcsWaitForOperationResult(op, 50, nullptr), HCS_E_OPERATION_TIMEOUT);
  CHECK_HR(HcsGetOperationResult(op, nullptr), HCS_E_OPERATION_PENDING);
  CHECK_HR(HcsCancelOperation(op), HCS_E_NOTIMPL);  // as documented: not implemented
  CHECK_HR(HcsWaitForOperationResult(op, 30, nullptr), HCS_E_OPERATION_TIMEOUT);
  t::configure(R"({"cancel":"honoured"})");  // the deviation, for tests
  CHECK_HR(HcsCancelOperation(op), 0);
  PWSTR result = nullptr;
  CHECK_HR(HcsWaitForOperationResult(op, 2000, &result), E_ABORT_HR);
  CHECK(result != nullptr);
  if (result) {
    Json j;
    std::string err;
    CHECK(hcssim::parseJson(hcssim::utf16ToUtf8(result), j, err));
    CHECK(j.get("Error")->asInt() == E_ABORT_HR);
    LocalFree(result);
  }
  HcsCloseOperation(op);
  t::configure(R"({"cancel":"notImplemented"})");
  CHECK_EQ(t::simState(s).get("HotAdded")->asInt(), 0);  // not applied
  // a hung create is terminated by reset; its handle then reports not-found
  t::configure(R"({"faults":[{"fn":"HcsCreateComputeSystem","hang":true}]})");
  HCS_OPERATION op2 = HcsCreateOperation(nullptr, nullptr);
  HCS_SYSTEM s2 = nullptr;
  auto id = t::u16("hung-create");
  auto cfg = t::u16(t::lcowDoc());
  CHECK_HR(HcsCreateComputeSystem(id.c_str(), cfg.c_str(), op2, nullptr, &s2), 0);
  CHECK_HR(HcsWaitForOperationResult(op2, 30, nullptr), HCS_E_OPERATION_TIMEOUT);
  t::configure(R"({"reset":true})");
  CHECK_HR(HcsWaitForOperationResult(op2, 2000, nullptr), HCS_E_TERMINATED);
  HcsCloseOperation(op2);
  CHECK_HR(t::run([&](HCS_OPERATION o) { return HcsStartComputeSystem(s2, o, nullptr); }).hr, HCS_E_SYSTEM_NOT_FOUND);
  // reset dropped the running system too
  CHECK_HR(t::run([&](HCS_OPERATION o) { return HcsGetComputeSystemProperties(s, o, nullptr); }).hr, HCS_E_SYSTEM_NOT_FOUND);
  HcsCloseComputeSystem(s2);
  HcsCloseComputeSystem(s);
}

TEST(fault_sync_functions_and_create) {
  t::configure(R"({"faults":[{"fn":"NameToGuid","hr":-2147024809},{"fn":"HcsOpenComputeSystem","nth":1,"hr":-2147024891},{"fn":"HcsCreateComputeSystem","nth":1}]})");
  GUID g;
  CHECK_HR(NameToGuid(u"x", &g), HCS_E_INVALIDARG);
  HCS_SYSTEM s = t::createSystem("fc", t::lcowDoc(), HCS_E_FAIL);
  CHECK_HR(t::run([&](HCS_OPERATION o) { return HcsStartComputeSystem(s, o, nullptr); }).hr, HCS_E_SYSTEM_NOT_FOUND);
  HcsCloseComputeSystem(s);
  s = t::createSystem("fc", t::lcowDoc());  // second create is fine
  HCS_SYSTEM h = nullptr;
  CHECK_HR(HcsOpenComputeSystem(u"fc", HCS_GENERIC_ALL, &h), HCS_E_ACCESS_DENIED_WIN32);
  CHECK_HR(HcsOpenComputeSystem(u"fc", HCS_GENERIC_ALL, &h), 0);
  HcsCloseComputeSystem(h);
  HcsCloseComputeSystem(s);
}

TEST(configure_validation) {
  const char *invalidJson[] = {"{", "[]", R"({"bogus":1})", R"({"latencyMs":"5"})", R"({"faults":{}})",
                               R"({"faults":[{"fn":"HcsModifyComputeSystem","x":1}]})", R"({"trace":5})",
                               R"({"latency":{"HcsModifyComputeSystem":{"msec":1}}})", R"({"reset":1})"};
  for (const char *c : invalidJson) CHECK_HR(HcsSimConfigure(t::u16(c).c_str()), HCS_E_INVALID_JSON);
  const char *invalidValue[] = {R"({"latencyMs":-1})", R"({"concurrency":1.5})", R"({"faults":[{"fn":"HcsBogus"}]})",
                                R"({"faults":[{"nth":0}]})", R"({"faults":[{"hr":4294967296}]})",
                                R"({"faults":[{"fn":"NameToGuid","guestOnly":true}]})", R"({"latency":{"Nope":{"ms":1}}})"};
  for (const char *c : invalidValue) CHECK_HR(HcsSimConfigure(t::u16(c).c_str()), HCS_E_INVALIDARG);
  CHECK_HR(HcsSimConfigure(nullptr), HCS_E_INVALIDARG);
  // nothing was applied by the failed documents: a fault list + bad key is rejected as a whole
  CHECK_HR(HcsSimConfigure(t::u16(R"({"faults":[{"fn":"NameToGuid"}],"bogus":true})").c_str()), HCS_E_INVALID_JSON);
  GUID g;
  CHECK_HR(NameToGuid(u"x", &g), 0);
}

TEST(latency_and_jitter) {
  t::configure(R"({"latencyMs":1,"latency":{"HcsEnumerateComputeSystems":{"ms":60,"jitterMs":20}},"seed":7})");
  auto t0 = std::chrono::steady_clock::now();
  CHECK_HR(t::run([&](HCS_OPERATION o) { return HcsEnumerateComputeSystems(nullptr, o); }).hr, 0);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  CHECK(ms >= 59);
  t0 = std::chrono::steady_clock::now();
  HCS_SYSTEM s = t::createSystem("lat", t::lcowDoc());
  ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  CHECK(ms >= 1);
  HcsCloseComputeSystem(s);
}

TEST(fault_hang_released) {
  HCS_SYSTEM s = t::createRunning("f-rel", t::lcowDoc());
  // released without an hr: applied
  t::configure(R"({"faults":[{"hang":true,"nth":1}]})");
  HCS_OPERATION op = HcsCreateOperation(nullptr, nullptr);
  auto doc = t::u16(plan9Add("late"));
  CHECK_HR(HcsModifyComputeSystem(s, op, doc.c_str(), nullptr), 0);
  CHECK_HR(HcsWaitForOperationResult(op, 30, nullptr), HCS_E_OPERATION_TIMEOUT);
  CHECK_HR(HcsCancelOperation(op), HCS_E_NOTIMPL);
  t::configure(R"({"releaseHangs":true})");
  CHECK_HR(HcsWaitForOperationResult(op, 2000, nullptr), 0);
  HcsCloseOperation(op);
  CHECK_EQ(t::simState(s).get("HotAdded")->asInt(), 1);
  // released with an hr: fails with it, nothing applied
  t::configure(R"({"faults":[{"hang":true,"nth":1,"hr":2147500037}]})");
  HCS_OPERATION op2 = HcsCreateOperation(nullptr, nullptr);
  auto doc2 = t::u16(plan9Add("late2"));
  CHECK_HR(HcsModifyComputeSystem(s, op2, doc2.c_str(), nullptr), 0);
  t::configure(R"({"releaseHangs":true})");
  CHECK_HR(HcsWaitForOperationResult(op2, 2000, nullptr), HCS_E_FAIL);
  HcsCloseOperation(op2);
  CHECK_EQ(t::simState(s).get("HotAdded")->asInt(), 1);
  HcsCloseComputeSystem(s);
  t::configure(R"({"clearFaults":true})");
}

TEST(remove_not_attached_control) {
  HCS_SYSTEM s = t::createRunning("f-missing", t::lcowDoc());
  std::string remove = std::string(R"({"ResourcePath":"VirtualMachine/Devices/Scsi/)") + t::kCtrl0 + R"(/Attachments/9","RequestType":"Remove"})";
  CHECK_HR(t::modify(s, remove).hr, HCS_E_NOT_FOUND);  // default
  t::configure(R"({"removeNotAttached":"invalidState"})");
  CHECK_HR(t::modify(s, remove).hr, HCS_E_INVALID_STATE);
  t::configure(R"({"removeNotAttached":"success"})");
  CHECK_HR(t::modify(s, remove).hr, 0);
  auto bad = t::u16(R"({"removeNotAttached":"maybe"})");
  CHECK_HR(HcsSimConfigure(bad.c_str()), HCS_E_INVALIDARG);
  t::configure(R"({"removeNotAttached":"notFound"})");
  HcsCloseComputeSystem(s);
}
