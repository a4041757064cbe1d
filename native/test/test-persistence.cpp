// State-file persistence and the trace file.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <vector>

#include "harness.h"

using hcssim::Json;

namespace {
std::string tempPath(const char *name) { return "/tmp/hcssim-test-" + std::to_string(::getpid()) + "-" + name; }
std::string readFile(const std::string &p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
// A fresh file `name` the simulator is configured to trace to.
std::string traceTo(const char *name) {
  std::string file = tempPath(name);
  std::remove(file.c_str());
  Json cfg = Json::object();
  cfg.set("trace", Json::string(file));
  t::configure(hcssim::toJson(cfg));
  return file;
}
// The trace file's lines, each parsed.
std::vector<Json> traceLines(const std::string &file) {
  std::vector<Json> lines;
  std::istringstream in(readFile(file));
  std::string line;
  while (std::getline(in, line)) {
    Json j;
    std::string err;
    CHECK(hcssim::parseJson(line, j, err));
    lines.push_back(j);
  }
  return lines;
}
std::vector<std::string> fnsOf(const std::vector<Json> &lines) {
  std::vector<std::string> fns;
  for (const auto &l : lines) fns.push_back(l.get("fn")->asString());
  return fns;
}
}  // namespace

TEST(state_file_reload) {
  std::string file = tempPath("state.json");
  std::remove(file.c_str());
  Json cfg = Json::object();
  cfg.set("stateFile", Json::string(file));
  t::configure(hcssim::toJson(cfg));
  HCS_SYSTEM s = t::createRunning("persist \"vm\"", t::lcowDoc());
  std::u16string path = u"C:\\weird \"p\"\\\u00e9\U0001F600.vhdx";
  Json settings = Json::object();
  settings.set("Type", Json::string("VirtualDisk"));
  settings.set("Path", Json::string(hcssim::utf16ToUtf8(path)));
  Json doc = Json::object();
  doc.set("ResourcePath", Json::string(std::string("VirtualMachine/Devices/Scsi/") + t::kCtrl0 + "/Attachments/4"));
  doc.set("RequestType", Json::string("Add"));
  doc.set("Settings", settings);
  Json gr = Json::object();
  gr.set("RequestType", Json::string("Add"));
  gr.set("ResourceType", Json::string("MappedVirtualDisk"));
  gr.set("Settings", Json::object());
  gr.get("Settings")->set("MountPath", Json::string("/run/gcs/c/x"));
  gr.get("Settings")->set("Lun", Json::number(4));
  doc.set("GuestRequest", gr);
  CHECK_HR(t::modify(s, hcssim::toJson(doc)).hr, 0);
  auto vm = t::u16("persist \"vm\"");
  CHECK_HR(HcsGrantVmAccess(vm.c_str(), path.c_str()), 0);
  HCS_SYSTEM created = t::createSystem("created-only", t::wcowDoc());
  Json before = t::simState(s);
  // the file is complete before the operations reported completion
  std::string text = readFile(file);
  CHECK(text.find("created-only") != std::string::npos);
  // "new process": forget everything without touching the file, then load it
  t::configure(R"({"stateFile":null})");
  t::configure(R"({"reset":true})");
  HCS_SYSTEM gone = nullptr;
  CHECK_HR(HcsOpenComputeSystem(vm.c_str(), HCS_GENERIC_ALL, &gone), HCS_E_SYSTEM_NOT_FOUND);
  HcsCloseComputeSystem(s);
  HcsCloseComputeSystem(created);
  t::configure(hcssim::toJson(cfg));
  HCS_SYSTEM again = nullptr;
  CHECK_HR(HcsOpenComputeSystem(vm.c_str(), HCS_GENERIC_ALL, &again), 0);
  Json after = t::simState(again);
  CHECK(after == before);
  // the reloaded tables are indexed: the mount is found by path and keeps its disk busy
  CHECK_HR(t::modify(again, R"({"GuestRequest":{"RequestType":"Add","ResourceType":"MappedVirtualDisk","Settings":{"MountPath":"/run/gcs/c/x","Lun":4}}})").hr,
           HCS_E_ALREADY_EXISTS_WIN32);
  CHECK_HR(t::modify(again, R"({"GuestRequest":{"RequestType":"Remove","ResourceType":"SCSIDevice","Settings":{"Lun":4}}})").hr, HCS_E_BUSY_WIN32);
  auto q = t::u16("");
  t::Result p = t::run([&](HCS_OPERATION op) { return HcsGetComputeSystemProperties(again, op, nullptr); });
  CHECK_EQ(p.json().get("State")->asString(), std::string("Running"));
  HCS_SYSTEM c2 = nullptr;
  CHECK_HR(HcsOpenComputeSystem(u"created-only", HCS_GENERIC_ALL, &c2), 0);
  // mutations keep being persisted; a stopped system without handles disappears from the file
  CHECK_HR(t::run([&](HCS_OPERATION op) { return HcsTerminateComputeSystem(c2, op, nullptr); }).hr, 0);
  HcsCloseComputeSystem(c2);
  CHECK(readFile(file).find("created-only") == std::string::npos);
  HcsCloseComputeSystem(again);
  // a malformed state file is rejected
  t::configure(R"({"stateFile":null})");
  std::string bad = tempPath("bad.json");
  { std::ofstream(bad) << "{not json"; }
  Json badCfg = Json::object();
  badCfg.set("stateFile", Json::string(bad));
  CHECK_HR(HcsSimConfigure(hcssim::utf8ToUtf16(hcssim::toJson(badCfg)).c_str()), HCS_E_INVALIDARG);
  std::remove(bad.c_str());
  t::configure(R"({"stateFile":null})");
  std::remove(file.c_str());
}

TEST(trace_lines) {
  std::string file = traceTo("trace.jsonl");
  HCS_SYSTEM s = t::createRunning("traced", t::lcowDoc());
  std::u16string path = u"C:\\a \"b\"\\\u00e9\U0001F600\x01";
  Json doc = Json::object();
  doc.set("ResourcePath", Json::string("VirtualMachine/Devices/Plan9/Shares"));
  doc.set("RequestType", Json::string("Add"));
  Json settings = Json::object();
  settings.set("Name", Json::string("0"));
  settings.set("Path", Json::string(hcssim::utf16ToUtf8(path)));
  settings.set("Port", Json::number(564));
  doc.set("Settings", settings);
  CHECK_HR(t::modify(s, hcssim::toJson(doc)).hr, 0);
  CHECK_HR(t::modify(s, "{oops").hr, HCS_E_INVALID_JSON);
  GUID g;
  NameToGuid(u"n", &g);
  HCS_OPERATION op = HcsCreateOperation(nullptr, nullptr);
  HcsEnumerateComputeSystems(nullptr, op);
  HcsWaitForOperationResult(op, HCS_INFINITE, nullptr);
  HcsCloseOperation(op);
  HcsCloseComputeSystem(s);
  t::configure(R"({"trace":null})");
  std::vector<Json> lines = traceLines(file);
  std::vector<std::string> expected = {"HcsCreateComputeSystem", "HcsStartComputeSystem", "HcsModifyComputeSystem",
                                       "HcsModifyComputeSystem", "NameToGuid", "HcsEnumerateComputeSystems",
                                       "HcsCloseComputeSystem"};
  CHECK(fnsOf(lines) == expected);
  if (lines.size() == expected.size()) {
    CHECK_EQ(lines[0].get("id")->asString(), std::string("traced"));
    CHECK(lines[0].get("doc")->get("SchemaVersion") != nullptr);
    CHECK(*lines[2].get("doc") == doc);
    CHECK(hcssim::utf8ToUtf16(lines[2].get("doc")->get("Settings")->get("Path")->asString()) == path);
    CHECK_EQ(lines[2].get("hr")->asInt(), 0);
    CHECK(lines[3].get("doc")->isString());
    CHECK_EQ(lines[3].get("hr")->asInt(), static_cast<int64_t>(HCS_E_INVALID_JSON));
    CHECK(lines[4].get("id")->isNull());
    CHECK_EQ(lines[4].get("doc")->get("Name")->asString(), std::string("n"));
    CHECK(lines[5].get("doc")->isNull());
  }
  std::remove(file.c_str());
}

TEST(trace_line_after_close) {
  // An operation still queued when its system's last handle closes is traced when it completes,
  // with the system's id, even after the system has left the registry: the operation keeps the
  // record the id is in.
  std::string file = traceTo("trace-closed.jsonl");
  const std::string add = R"({"ResourcePath":"VirtualMachine/Devices/Plan9/Shares","RequestType":"Add","Settings":{"Name":"0","Path":"C:\\p","Port":564}})";
  auto doc = t::u16(add);
  const char *hangModify = R"({"faults":[{"fn":"HcsModifyComputeSystem","hang":true,"nth":1}]})";
  // released after the close: the system, stopped, left the registry with its last handle
  HCS_SYSTEM s = t::createRunning("closed-then-released", t::lcowDoc());
  CHECK_HR(t::run([&](HCS_OPERATION o) { return HcsTerminateComputeSystem(s, o, nullptr); }).hr, 0);
  t::configure(hangModify);
  HCS_OPERATION op = HcsCreateOperation(nullptr, nullptr);
  CHECK_HR(HcsModifyComputeSystem(s, op, doc.c_str(), nullptr), 0);
  HcsCloseComputeSystem(s);
  HCS_SYSTEM gone = nullptr;
  CHECK_HR(HcsOpenComputeSystem(u"closed-then-released", HCS_GENERIC_ALL, &gone), HCS_E_SYSTEM_NOT_FOUND);
  CHECK_HR(HcsGetOperationResult(op, nullptr), HCS_E_OPERATION_PENDING);
  t::configure(R"({"releaseHangs":true})");
  CHECK_HR(HcsWaitForOperationResult(op, HCS_INFINITE, nullptr), HCS_E_SYSTEM_NOT_FOUND);
  HcsCloseOperation(op);
  // terminated by a reset after the close: the reset dropped the running system
  HCS_SYSTEM r = t::createRunning("closed-then-reset", t::lcowDoc());
  t::configure(hangModify);
  HCS_OPERATION op2 = HcsCreateOperation(nullptr, nullptr);
  CHECK_HR(HcsModifyComputeSystem(r, op2, doc.c_str(), nullptr), 0);
  HcsCloseComputeSystem(r);
  CHECK_HR(HcsGetOperationResult(op2, nullptr), HCS_E_OPERATION_PENDING);
  t::configure(R"({"reset":true})");
  CHECK_HR(HcsWaitForOperationResult(op2, HCS_INFINITE, nullptr), HCS_E_TERMINATED);
  HcsCloseOperation(op2);
  t::configure(R"({"trace":null})");
  std::vector<Json> lines = traceLines(file);
  std::vector<std::string> expected = {"HcsCreateComputeSystem", "HcsStartComputeSystem", "HcsTerminateComputeSystem",
                                       "HcsCloseComputeSystem",  "HcsOpenComputeSystem",  "HcsModifyComputeSystem",
                                       "HcsCreateComputeSystem", "HcsStartComputeSystem", "HcsCloseComputeSystem",
                                       "HcsModifyComputeSystem"};
  CHECK(fnsOf(lines) == expected);
  if (lines.size() == expected.size()) {
    Json request;
    std::string err;
    CHECK(hcssim::parseJson(add, request, err));
    CHECK_EQ(lines[5].get("id")->asString(), std::string("closed-then-released"));
    CHECK_EQ(lines[5].get("hr")->asInt(), static_cast<int64_t>(HCS_E_SYSTEM_NOT_FOUND));
    CHECK(*lines[5].get("doc") == request);
    CHECK_EQ(lines[9].get("id")->asString(), std::string("closed-then-reset"));
    CHECK_EQ(lines[9].get("hr")->asInt(), static_cast<int64_t>(HCS_E_TERMINATED));
    CHECK(*lines[9].get("doc") == request);
  }
  std::remove(file.c_str());
}
