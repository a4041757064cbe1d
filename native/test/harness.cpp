#include "harness.h"

#include <chrono>
#include <cstdlib>
#include <cstring>

using hcssim::Json;

namespace t {

std::vector<Case> &registry() {
  static std::vector<Case> *r = new std::vector<Case>();
  return *r;
}
int failures = 0;
static const char *current = "";

void report(const char *file, int line, const std::string &what) {
  ++failures;
  std::fprintf(stderr, "  FAIL [%s] %s:%d: %s\n", current, file, line, what.c_str());
}

std::string hex(HRESULT hr) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", static_cast<unsigned>(hr));
  return buf;
}

std::u16string u16(const std::string &utf8) { return hcssim::utf8ToUtf16(utf8); }

Json Result::json() const {
  Json j;
  std::string err;
  if (!hcssim::parseJson(doc, j, err)) report(__FILE__, __LINE__, "result document is not JSON: " + doc);
  return j;
}

Result run(const std::function<HRESULT(HCS_OPERATION)> &call) {
  HCS_OPERATION op = HcsCreateOperation(nullptr, nullptr);
  Result r{0, ""};
  HRESULT hr = call(op);
  if (hr < 0) {
    HcsCloseOperation(op);
    r.hr = hr;
    return r;
  }
  PWSTR doc = nullptr;
  r.hr = HcsWaitForOperationResult(op, HCS_INFINITE, &doc);
  if (doc) {
    r.doc = hcssim::utf16ToUtf8(doc);
    LocalFree(doc);
  }
  HcsCloseOperation(op);
  return r;
}

void configure(const std::string &json) {
  HRESULT hr = HcsSimConfigure(u16(json).c_str());
  if (hr != 0) report(__FILE__, __LINE__, "HcsSimConfigure(" + json + ") = " + hex(hr));
}

void reset() {
  configure(R"({"reset": true, "latencyMs": 0, "jitterMs": 0, "latency": {}, "concurrency": 0, "trace": null, "stateFile": null})");
}

const char *const kCtrl0 = "df6d0690-79e5-55b6-a5ec-c1e2f77f580a";

std::string lcowDoc() { return withGuestConnection(lcowBridgeDoc(), R"({"UseVsock":true,"UseConnectedSuspend":true})"); }

std::string wcowDoc() { return withGuestConnection(wcowBridgeDoc(), "{}"); }

std::string withGuestConnection(std::string doc, const std::string &gc) {
  const std::string key = "\"VirtualMachine\":{";
  doc.insert(doc.find(key) + key.size(), "\"GuestConnection\":" + gc + ",");
  return doc;
}

std::string lcowBridgeDoc() {
  return R"({"Owner":"test","SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"LinuxKernelDirect":{"KernelFilePath":"k"}},"Devices":{"Scsi":{"df6d0690-79e5-55b6-a5ec-c1e2f77f580a":{}},"VirtualPMem":{"MaximumCount":4,"MaximumSizeBytes":1073741824},"Plan9":{}}}})";
}

std::string wcowBridgeDoc() {
  return R"({"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{"BootThis":{"DeviceType":"VmbFs","DevicePath":"\\EFI\\Microsoft\\Boot\\bootmgfw.efi"}}},"Devices":{"Scsi":{"df6d0690-79e5-55b6-a5ec-c1e2f77f580a":{"Attachments":{"0":{"Type":"VirtualDisk","Path":"C:\\uvm\\sandbox.vhdx"}}}},"VirtualSmb":{"DirectFileMappingInMB":1024,"Shares":[{"Name":"os","Path":"C:\\os","Options":{"ReadOnly":true}}]}}}})";
}

HCS_SYSTEM createSystem(const std::string &id, const std::string &doc, HRESULT expect) {
  HCS_SYSTEM sys = nullptr;
  auto wid = u16(id);
  auto wdoc = u16(doc);
  Result r = run([&](HCS_OPERATION op) { return HcsCreateComputeSystem(wid.c_str(), wdoc.c_str(), op, nullptr, &sys); });
  if (r.hr != expect) report(__FILE__, __LINE__, "create " + id + " = " + hex(r.hr) + " " + r.doc);
  return sys;
}

HCS_SYSTEM createRunning(const std::string &id, const std::string &doc) {
  HCS_SYSTEM sys = createSystem(id, doc);
  Result r = run([&](HCS_OPERATION op) { return HcsStartComputeSystem(sys, op, nullptr); });
  if (r.hr != 0) report(__FILE__, __LINE__, "start " + id + " = " + hex(r.hr) + " " + r.doc);
  return sys;
}

Result modify(HCS_SYSTEM sys, const std::string &doc) {
  auto w = u16(doc);
  return run([&](HCS_OPERATION op) { return HcsModifyComputeSystem(sys, op, w.c_str(), nullptr); });
}

Json simState(HCS_SYSTEM sys) {
  auto q = u16(R"({"PropertyTypes":["SimulatorState"]})");
  Result r = run([&](HCS_OPERATION op) { return HcsGetComputeSystemProperties(sys, op, q.c_str()); });
  if (r.hr != 0) report(__FILE__, __LINE__, "properties = " + hex(r.hr) + " " + r.doc);
  Json j = r.json();
  const Json *s = j.get("SimulatorState");
  return s ? *s : Json();
}

}  // namespace t

int main(int argc, char **argv) {
  if (argc > 2 && std::strcmp(argv[1], "--child") == 0) return t::runChild(argv[2], argc - 3, argv + 3);
  auto start = std::chrono::steady_clock::now();
  int ran = 0;
  for (const auto &c : t::registry()) {
    if (argc > 1 && std::strstr(c.name, argv[1]) == nullptr) continue;
    t::current = c.name;
    int before = t::failures;
    t::reset();
    c.fn();
    ++ran;
    std::printf("%s %s\n", t::failures == before ? "ok  " : "FAIL", c.name);
    std::fflush(stdout);
  }
  t::reset();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%d tests, %d failed checks, %.2f s\n", ran, t::failures, secs);
  return t::failures == 0 ? 0 : 1;
}
