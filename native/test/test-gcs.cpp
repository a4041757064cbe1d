// The fake guest: bridge framing and handlers (pure), then end to end through Unix sockets: the
// test plays the library (listens on the hvsocket endpoints, speaks the bridge as the host).
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "gcs-protocol.h"
#include "harness.h"
#include "model.h"

using hcssim::Json;
namespace gcs = hcssim::gcs;

namespace {

Json parse(const std::string &s) {
  Json j;
  std::string err;
  if (!hcssim::parseJson(s, j, err)) t::report(__FILE__, __LINE__, "not JSON: " + s);
  return j;
}

int64_t resultOf(const gcs::Reply &r) { return parse(r.body).get("Result")->asInt(); }

gcs::Message request(const char *name, const std::string &body, uint64_t id = 1) {
  gcs::Message m;
  m.type = gcs::requestTypeOf(name);
  m.id = id;
  m.body = body;
  return m;
}

const char *kNegotiate = R"({"ContainerId":"","ActivityId":"00000000-0000-0000-0000-000000000000","MinimumVersion":4,"MaximumVersion":4})";

std::string modifyBody(const std::string &requestJson, const std::string &container = gcs::kNullContainerId) {
  return R"({"ContainerId":")" + container + R"(","ActivityId":"11111111-2222-3333-4444-555555555555","Request":)" + requestJson + "}";
}

}  // namespace

TEST(gcs_framing) {
  std::string body(180, ' ');
  std::string bytes = gcs::encode(gcs::kRequest | gcs::kModifySettings, 7, body);
  const unsigned char expect[16] = {0x01, 0x0a, 0x10, 0x10, 0xc4, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0};
  CHECK(bytes.size() == 196 && std::memcmp(bytes.data(), expect, 16) == 0);
  CHECK_EQ(gcs::responseTypeOf(0x10100a01u), 0x20100a01u);
  CHECK_EQ(gcs::messageName(0x10100a01u), std::string("ModifySettings"));
  CHECK_EQ(gcs::messageName(0x20100b01u), std::string("NegotiateProtocol"));
  CHECK_EQ(gcs::messageName(0x30100101u), std::string("ContainerNotification"));
  CHECK_EQ(gcs::messageName(0x10123401u), std::string("0x10123401"));
  CHECK_EQ(gcs::requestTypeOf("ModifyServiceSettings"), 0x10200101u);
  CHECK_EQ(gcs::requestTypeOf("Nope"), 0u);
  // two messages fed one byte at a time
  std::string two = bytes + gcs::encode(0x10100b01u, 0x1122334455667788ull, "{}");
  gcs::FrameReader r;
  std::vector<gcs::Message> got;
  for (char c : two) {
    CHECK(r.feed(&c, 1));
    gcs::Message m;
    while (r.next(m)) got.push_back(m);
  }
  CHECK(got.size() == 2);
  if (got.size() == 2) {
    CHECK(got[0].type == 0x10100a01u && got[0].id == 7 && got[0].body == body);
    CHECK(got[1].id == 0x1122334455667788ull && got[1].body == "{}");
  }
  // size below the header: broken stream
  gcs::FrameReader bad;
  std::string small = gcs::encode(0x10100b01u, 1, "");
  small[4] = 15;
  CHECK(!bad.feed(small.data(), small.size()));
  CHECK(!bad.error().empty());
  // size above the bound
  gcs::FrameReader capped(0x10000);
  std::string big = gcs::encode(0x20100b01u, 1, std::string(0x10000, 'x'));
  CHECK(!capped.feed(big.data(), 16));
}

TEST(gcs_handlers_lcow) {
  gcs::Session s;
  s.profile = gcs::Profile::Lcow;
  int applied = 0;
  Json last;
  gcs::ApplyGuest apply = [&](const Json &req) {
    ++applied;
    last = req;
    const Json *st = req.get("Settings");
    if (st && st->get("Fail")) hcssim::fail(HCS_E_NOT_FOUND, "nothing there");
    if (st && st->get("Shape")) hcssim::invalidJson("bad shape");
  };
  // before negotiation only NegotiateProtocol is known
  gcs::Reply r = gcs::handle(s, request("ModifySettings", modifyBody(R"({"ResourceType":"MappedVirtualDisk"})")), apply);
  CHECK_EQ(resultOf(r), int64_t(gcs::kENotImpl));
  CHECK_EQ(r.type, 0x20100a01u);
  CHECK(parse(r.body).get("ErrorRecords")->items()[0].get("ModuleName")->asString() == "gcs");
  CHECK_EQ(applied, 0);
  // version rules
  r = gcs::handle(s, request("NegotiateProtocol", R"({"MinimumVersion":1,"MaximumVersion":3})"), apply);
  CHECK_EQ(resultOf(r), int64_t(gcs::kUnsupportedProtocolVersion));
  r = gcs::handle(s, request("NegotiateProtocol", R"({"MinimumVersion":5,"MaximumVersion":6})"), apply);
  CHECK_EQ(resultOf(r), int64_t(gcs::kUnsupportedProtocolVersion));
  r = gcs::handle(s, request("NegotiateProtocol", "{not json"), apply);
  CHECK_EQ(resultOf(r), int64_t(gcs::kInvalidJson));
  r = gcs::handle(s, request("NegotiateProtocol", kNegotiate), apply);
  Json b = parse(r.body);
  CHECK_EQ(b.get("Result")->asInt(), int64_t(0));
  CHECK_EQ(b.get("Version")->asInt(), int64_t(4));
  CHECK(b.get("ErrorMessage") == nullptr);
  const Json *caps = b.get("Capabilities");
  CHECK(caps && caps->get("RuntimeOsType")->asString() == "Linux");
  CHECK(caps && caps->get("SendHostCreateMessage") == nullptr);
  CHECK(caps && caps->get("GuestDefinedCapabilities")->get("NamespaceAddRequestSupported")->asBool());
  CHECK(s.negotiated);
  // ModifySettings: ActivityId echoed, empty RequestType = Add, zero fields absent
  r = gcs::handle(s, request("ModifySettings", modifyBody(R"({"ResourceType":"MappedVirtualDisk","Settings":{"MountPath":"/m"}})"), 9), apply);
  b = parse(r.body);
  CHECK_EQ(b.get("Result")->asInt(), int64_t(0));
  CHECK_EQ(b.get("ActivityId")->asString(), std::string("11111111-2222-3333-4444-555555555555"));
  CHECK_EQ(applied, 1);
  CHECK_EQ(last.get("RequestType")->asString(), std::string("Add"));
  // the container id must be the all-zero GUID (not the VM id, not null)
  for (const char *c : {"vm-1", "", "00000000-0000-0000-0000-000000000001"}) {
    r = gcs::handle(s, request("ModifySettings", modifyBody(R"({"ResourceType":"MappedVirtualDisk","Settings":{"MountPath":"/m"}})", c)), apply);
    CHECK_EQ(resultOf(r), int64_t(gcs::kSystemNotFound));
  }
  r = gcs::handle(s, request("ModifySettings", R"({"ContainerId":null,"Request":{}})"), apply);
  CHECK_EQ(resultOf(r), int64_t(gcs::kSystemNotFound));
  // unknown ResourceType / unsupported RequestType: E_FAIL with the GCS's messages
  r = gcs::handle(s, request("ModifySettings", modifyBody(R"({"ResourceType":"Bogus","Settings":{}})")), apply);
  CHECK_EQ(resultOf(r), int64_t(gcs::kEFail));
  CHECK_EQ(parse(r.body).get("ErrorMessage")->asString(), std::string("invalid ResourceType 'Bogus'"));
  r = gcs::handle(s, request("ModifySettings", modifyBody(R"({"RequestType":"Add","ResourceType":"SCSIDevice","Settings":{}})")), apply);
  CHECK_EQ(resultOf(r), int64_t(gcs::kEFail));
  CHECK_EQ(parse(r.body).get("ErrorMessage")->asString(), std::string("the RequestType \"Add\" is not supported"));
  r = gcs::handle(s, request("ModifySettings", modifyBody(R"({"RequestType":"Remove","ResourceType":"VPCIDevice","Settings":{}})")), apply);
  CHECK_EQ(resultOf(r), int64_t(gcs::kEFail));
  for (const char *wcowOnly : {"HvSocket", "NetworkNamespace", "MappedVirtualDiskForContainerScratch"}) {
    r = gcs::handle(s, request("ModifySettings", modifyBody(std::string(R"({"RequestType":"Update","ResourceType":")") + wcowOnly + R"(","Settings":{}})")), apply);
    CHECK_EQ(resultOf(r), int64_t(gcs::kEFail));
  }
  // model failures: shape → INVALID_JSON, semantic → E_FAIL with the model's message
  r = gcs::handle(s, request("ModifySettings", modifyBody(R"({"ResourceType":"MappedVirtualDisk","Settings":{"Fail":1}})")), apply);
  CHECK_EQ(resultOf(r), int64_t(gcs::kEFail));
  CHECK_EQ(parse(r.body).get("ErrorMessage")->asString(), std::string("nothing there"));
  r = gcs::handle(s, request("ModifySettings", modifyBody(R"({"ResourceType":"MappedVirtualDisk","Settings":{"Shape":1}})")), apply);
  CHECK_EQ(resultOf(r), int64_t(gcs::kInvalidJson));
  // Create / Start / anything else: E_NOTIMPL for LCOW
  for (const char *n : {"Create", "Start", "ExecuteProcess", "GetProperties"}) {
    r = gcs::handle(s, request(n, R"({"ContainerId":"00000000-0000-0000-0000-000000000000"})"), apply);
    CHECK_EQ(resultOf(r), int64_t(gcs::kENotImpl));
  }
  // not a request
  gcs::Message notify;
  notify.type = gcs::kContainerNotification;
  notify.body = "{}";
  CHECK_EQ(resultOf(gcs::handle(s, notify, apply)), int64_t(gcs::kENotImpl));
  // Network: no adapters in the simulator
  r = gcs::handle(s, request("ModifySettings", modifyBody(R"({"ResourceType":"Network","Settings":{"ID":"n1","NamespaceID":"x"}})")), apply);
  CHECK_EQ(resultOf(r), int64_t(gcs::kEFail));
  CHECK_EQ(applied, 1 + 2);
}

TEST(gcs_handlers_wcow) {
  gcs::Session s;
  s.profile = gcs::Profile::Wcow;
  s.runtimeId = "5f0d0e2c-1a2b-4c3d-8e9f-0a1b2c3d4e5f";
  gcs::ApplyGuest apply = [&](const Json &) {};
  gcs::Reply r = gcs::handle(s, request("NegotiateProtocol", kNegotiate), apply);
  Json b = parse(r.body);
  const Json *caps = b.get("Capabilities");
  CHECK(caps && caps->get("SendHostCreateMessage")->asBool() && caps->get("SendHostStartMessage")->asBool());
  CHECK(caps && caps->get("RuntimeOsType") == nullptr);
  std::string null = R"("ContainerId":"00000000-0000-0000-0000-000000000000")";
  r = gcs::handle(s, request("Start", "{" + null + "}"), apply);
  CHECK_EQ(resultOf(r), int64_t(gcs::kSystemNotFound));  // not created yet
  r = gcs::handle(s, request("Create", "{" + null + R"(,"ContainerConfig":{"SystemType":"Container"}})"), apply);
  CHECK_EQ(resultOf(r), int64_t(gcs::kInvalidJson));  // must be a string holding JSON
  r = gcs::handle(s, request("Create", "{" + null + R"(,"ContainerConfig":"{\"SystemType\":\"Container\",\"TimeZoneInformation\":{}}"})"), apply);
  CHECK_EQ(resultOf(r), int64_t(0));
  r = gcs::handle(s, request("Create", "{" + null + R"(,"ContainerConfig":"{\"SystemType\":\"Container\"}"})"), apply);
  CHECK_EQ(resultOf(r), int64_t(gcs::kSystemAlreadyExists));
  r = gcs::handle(s, request("Start", "{" + null + "}"), apply);
  CHECK_EQ(resultOf(r), int64_t(0));
  CHECK(s.created && s.started);
  // HvSocket Update: LocalAddress = the RuntimeId, ParentAddress = the WCOW host id
  std::string hv = R"({"RequestType":"Update","ResourceType":"HvSocket","Settings":{"LocalAddress":"%L","ParentAddress":"894cc2d6-9d79-424f-93fe-42969ae6d8d1"}})";
  std::string wrong = hv;
  wrong.replace(wrong.find("%L"), 2, "vm-1");
  r = gcs::handle(s, request("ModifySettings", modifyBody(wrong)), apply);
  CHECK_EQ(resultOf(r), int64_t(gcs::kEFail));
  std::string right = hv;
  right.replace(right.find("%L"), 2, "5F0D0E2C-1A2B-4C3D-8E9F-0A1B2C3D4E5F");
  r = gcs::handle(s, request("ModifySettings", modifyBody(right)), apply);
  CHECK_EQ(resultOf(r), int64_t(0));
  CHECK(s.hvSocketConfigured);
  // LCOW-only resources are unknown to the WCOW guest
  for (const char *lcowOnly : {"VPMemDevice", "SCSIDevice", "VPCIDevice"}) {
    r = gcs::handle(s, request("ModifySettings", modifyBody(std::string(R"({"RequestType":"Remove","ResourceType":")") + lcowOnly + R"(","Settings":{}})")), apply);
    CHECK_EQ(resultOf(r), int64_t(gcs::kEFail));
  }
  // NetworkNamespace Add/Remove (guest-only)
  r = gcs::handle(s, request("ModifySettings", modifyBody(R"({"RequestType":"Add","ResourceType":"NetworkNamespace","Settings":{"ID":"ns1"}})")), apply);
  CHECK_EQ(resultOf(r), int64_t(0));
  r = gcs::handle(s, request("ModifySettings", modifyBody(R"({"RequestType":"Remove","ResourceType":"NetworkNamespace","Settings":{"ID":"ns1"}})")), apply);
  CHECK_EQ(resultOf(r), int64_t(0));
  r = gcs::handle(s, request("ModifySettings", modifyBody(R"({"RequestType":"Remove","ResourceType":"NetworkNamespace","Settings":{"ID":"ns1"}})")), apply);
  CHECK_EQ(resultOf(r), int64_t(gcs::kEFail));
}

// ------------------------------------------------------------------------------------------------
// End to end: the test is the library.

namespace {

struct Host {
  std::string dir;
  Host() {
    char tmpl[] = "/tmp/hcssim-gcs-XXXXXX";
    dir = mkdtemp(tmpl);
    t::configure(R"({"hvsockDir":")" + dir + "\"}");
  }
  ~Host() {
    std::string cmd = "rm -rf '" + dir + "'";
    int ignored = std::system(cmd.c_str());
    (void)ignored;
  }
  int listen(const std::string &vmId, const std::string &service) {
    std::string path = dir + "/" + vmId + "-" + service + ".sock";
    unlink(path.c_str());  // a listener closed before left its file
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 || ::listen(fd, 4) != 0)
      t::report(__FILE__, __LINE__, "cannot listen on " + path);
    return fd;
  }
};

bool readable(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, ms) > 0;
}

// Accepts one connection (the deadline is a safety net, never a synchronisation).
int acceptWithin(int listener, int ms = 10000) {
  if (!readable(listener, ms)) return -1;
  return accept(listener, nullptr, nullptr);
}

bool readExact(int fd, char *buf, size_t n, int ms = 10000) {
  size_t got = 0;
  while (got < n) {
    if (!readable(fd, ms)) return false;
    ssize_t r = recv(fd, buf + got, n - got, 0);
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return true;
}

bool readMessage(int fd, gcs::Message &m, int ms = 10000) {
  char h[16];
  if (!readExact(fd, h, 16, ms)) return false;
  uint32_t size;
  std::memcpy(&m.type, h, 4);
  std::memcpy(&size, h + 4, 4);
  std::memcpy(&m.id, h + 8, 8);
  m.body.assign(size - 16, '\0');
  return size == 16 || readExact(fd, &m.body[0], size - 16, ms);
}

void sendAll(int fd, const std::string &s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      t::report(__FILE__, __LINE__, "send failed");
      return;
    }
    off += static_cast<size_t>(n);
  }
}

Json rpc(int fd, const char *name, const std::string &body, uint64_t id, uint64_t *idOut = nullptr) {
  sendAll(fd, gcs::encode(gcs::requestTypeOf(name), id, body));
  gcs::Message m;
  if (!readMessage(fd, m)) {
    t::report(__FILE__, __LINE__, std::string("no response to ") + name);
    return Json();
  }
  if (idOut) *idOut = m.id;
  else if (m.id != id) t::report(__FILE__, __LINE__, "response id mismatch");
  if (m.type != gcs::responseTypeOf(gcs::requestTypeOf(name))) t::report(__FILE__, __LINE__, "response type mismatch");
  return parse(m.body);
}

std::string runtimeIdOf(HCS_SYSTEM sys) {
  t::Result r = t::run([&](HCS_OPERATION op) { return HcsGetComputeSystemProperties(sys, op, nullptr); });
  Json p = r.json();
  return p.get("RuntimeId") ? p.get("RuntimeId")->asString() : std::string();
}

HCS_SYSTEM created(const std::string &id, const std::string &doc, std::string &runtimeId) {
  HCS_SYSTEM sys = t::createSystem(id, doc);
  runtimeId = runtimeIdOf(sys);
  return sys;
}

void start(HCS_SYSTEM sys) { CHECK_HR(t::run([&](HCS_OPERATION op) { return HcsStartComputeSystem(sys, op, nullptr); }).hr, 0); }

void terminate(HCS_SYSTEM sys) {
  t::run([&](HCS_OPERATION op) { return HcsTerminateComputeSystem(sys, op, nullptr); });
  HcsCloseComputeSystem(sys);
}

// LCOW boot as hcsshim does it: entropy and log accepted, then the GCS; returns the bridge.
int bootLcow(Host &h, const std::string &rid, HCS_SYSTEM sys, std::string *logText = nullptr) {
  int le = h.listen(rid, gcs::kLcowEntropyService);
  int ll = h.listen(rid, gcs::kLcowLogService);
  int lg = h.listen(rid, gcs::kLcowGcsService);
  start(sys);
  int e = acceptWithin(le);
  CHECK(e >= 0);
  sendAll(e, std::string(512, 'r'));
  close(e);
  int l = acceptWithin(ll);
  CHECK(l >= 0);
  if (logText && l >= 0) {
    char buf[4096];
    while (logText->find("serving") == std::string::npos && readable(l, 10000)) {
      ssize_t n = recv(l, buf, sizeof buf, 0);
      if (n <= 0) break;
      logText->append(buf, static_cast<size_t>(n));
    }
  }
  int g = acceptWithin(lg);
  CHECK(g >= 0);
  close(le);
  close(ll);
  close(lg);
  if (l >= 0) close(l);
  Json n = rpc(g, "NegotiateProtocol", kNegotiate, 0);
  CHECK(n.get("Version") && n.get("Version")->asInt() == 4);
  return g;
}

std::string readTrace(const std::string &path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const char *kMvdAdd = R"({"RequestType":"Add","ResourceType":"MappedVirtualDisk","Settings":{"MountPath":"/run/mounts/scsi/m1","Lun":1,"ReadOnly":true}})";

}  // namespace

TEST(gcs_lcow_boot_and_modify) {
  Host h;
  std::string tracePath = h.dir + "/trace";
  t::configure(R"({"trace":")" + tracePath + "\"}");
  std::string rid;
  HCS_SYSTEM sys = created("vm-g1", t::lcowBridgeDoc(), rid);
  CHECK(!rid.empty());
  std::string logText;
  int g = bootLcow(h, rid, sys, &logText);
  CHECK(logText.find("\"level\":\"info\"") != std::string::npos);
  // a guest request checked against host state: no disk at LUN 1 yet → E_FAIL, nothing applied
  Json r = rpc(g, "ModifySettings", modifyBody(kMvdAdd), 1);
  CHECK_EQ(r.get("Result")->asInt(), int64_t(gcs::kEFail));
  CHECK(r.get("ErrorMessage")->asString().find("LUN 1") != std::string::npos);
  // host half through HCS, then the guest half over the bridge: the SAME guest model
  t::Result host = t::modify(sys, std::string(R"({"ResourcePath":"VirtualMachine/Devices/Scsi/)") + t::kCtrl0 +
                                      R"(/Attachments/1","RequestType":"Add","Settings":{"Type":"VirtualDisk","Path":"C:\\d.vhdx","ReadOnly":true}})");
  CHECK_HR(host.hr, 0);
  r = rpc(g, "ModifySettings", modifyBody(kMvdAdd), 2);
  CHECK_EQ(r.get("Result")->asInt(), int64_t(0));
  Json st = t::simState(sys);
  CHECK(st.get("Guest")->get("MappedVirtualDisks")->items().size() == 1);
  // the HCS path sees the bridge's mount (same model): a second mount at the path is refused there
  // (the deviation "accept" lets HCS take a GuestRequest on this bridge-mode VM at all)
  t::configure(R"({"guestRequestWithoutGuestConnection":"accept"})");
  t::Result dup = t::modify(sys, R"({"GuestRequest":)" + std::string(kMvdAdd) + "}");
  CHECK_HR(dup.hr, HCS_E_ALREADY_EXISTS_WIN32);
  // remove over the bridge, then unplug, then host remove
  r = rpc(g, "ModifySettings", modifyBody(R"({"RequestType":"Remove","ResourceType":"MappedVirtualDisk","Settings":{"MountPath":"/run/mounts/scsi/m1","Lun":1}})"), 3);
  CHECK_EQ(r.get("Result")->asInt(), int64_t(0));
  r = rpc(g, "ModifySettings", modifyBody(R"({"RequestType":"Remove","ResourceType":"SCSIDevice","Settings":{"Lun":1}})"), 4);
  CHECK_EQ(r.get("Result")->asInt(), int64_t(0));
  CHECK(t::simState(sys).get("Guest")->get("MappedVirtualDisks")->items().empty());
  // trace: one line per bridge message, id = the system id
  std::string tr = readTrace(tracePath);
  CHECK(tr.find(R"({"fn":"bridge:NegotiateProtocol","id":"vm-g1")") != std::string::npos);
  CHECK(tr.find(R"("fn":"bridge:ModifySettings","id":"vm-g1","doc":{"ContainerId":"00000000-0000-0000-0000-000000000000")") != std::string::npos);
  CHECK(tr.find(R"("hr":-2147467259)") != std::string::npos);
  // the VM stops: the bridge sees EOF
  t::run([&](HCS_OPERATION op) { return HcsTerminateComputeSystem(sys, op, nullptr); });
  char c;
  CHECK(readable(g, 10000) && recv(g, &c, 1, 0) == 0);
  close(g);
  HcsCloseComputeSystem(sys);
}

TEST(gcs_wcow_and_guest_connection_modes) {
  Host h;
  std::string rid;
  HCS_SYSTEM w = created("vm-w", t::wcowBridgeDoc(), rid);
  int lg = h.listen(rid, gcs::kWcowGcsService);
  start(w);
  int g = acceptWithin(lg);
  CHECK(g >= 0);
  Json n = rpc(g, "NegotiateProtocol", kNegotiate, 0);
  CHECK(n.get("Capabilities")->get("SendHostCreateMessage")->asBool());
  Json r = rpc(g, "Create", R"({"ContainerId":"00000000-0000-0000-0000-000000000000","ActivityId":"00000000-0000-0000-0000-000000000000","ContainerConfig":"{\"SystemType\":\"Container\"}"})", 1);
  CHECK_EQ(r.get("Result")->asInt(), int64_t(0));
  r = rpc(g, "Start", R"({"ContainerId":"00000000-0000-0000-0000-000000000000","ActivityId":"00000000-0000-0000-0000-000000000000"})", 2);
  CHECK_EQ(r.get("Result")->asInt(), int64_t(0));
  r = rpc(g, "ModifySettings", modifyBody(R"({"RequestType":"Update","ResourceType":"HvSocket","Settings":{"LocalAddress":")" + rid +
                                          R"(","ParentAddress":"894cc2d6-9d79-424f-93fe-42969ae6d8d1"}})"), 3);
  CHECK_EQ(r.get("Result")->asInt(), int64_t(0));
  // WCOW scratch mount over the bridge (controller 0 LUN 0 is the boot scratch)
  r = rpc(g, "ModifySettings", modifyBody(R"({"ResourceType":"MappedVirtualDisk","Settings":{"ContainerPath":"C:\\c\\1"}})"), 4);
  CHECK_EQ(r.get("Result")->asInt(), int64_t(0));
  close(g);
  close(lg);
  terminate(w);

  // HCS-owned mode: LCOW dials entropy and log but no GCS; WCOW dials nothing
  std::string gcDoc = t::lcowDoc();  // with GuestConnection
  std::string lrid;
  HCS_SYSTEM l = created("vm-l", gcDoc, lrid);
  int le = h.listen(lrid, gcs::kLcowEntropyService);
  int ll = h.listen(lrid, gcs::kLcowLogService);
  int lgcs = h.listen(lrid, gcs::kLcowGcsService);
  start(l);
  int e = acceptWithin(le);
  CHECK(e >= 0);
  close(e);
  int lc = acceptWithin(ll);
  CHECK(lc >= 0);
  CHECK(acceptWithin(lgcs, 300) < 0);  // never dialled (300 ms: a bound on a negative check)
  // in HCS-owned mode the HCS path carries guest requests
  t::Result hr = t::modify(l, std::string(R"({"ResourcePath":"VirtualMachine/Devices/Scsi/)") + t::kCtrl0 +
                                  R"(/Attachments/1","RequestType":"Add","Settings":{"Type":"VirtualDisk","Path":"C:\\d.vhdx"},"GuestRequest":)" + kMvdAdd + "}");
  CHECK_HR(hr.hr, 0);
  close(lc);
  close(le);
  close(ll);
  close(lgcs);
  terminate(l);
}

TEST(gcs_refuses_guest_request_without_guest_connection) {
  std::string rid;
  HCS_SYSTEM sys = created("vm-r", t::lcowBridgeDoc(), rid);
  start(sys);
  std::string attach = std::string(R"({"ResourcePath":"VirtualMachine/Devices/Scsi/)") + t::kCtrl0 +
                       R"(/Attachments/1","RequestType":"Add","Settings":{"Type":"VirtualDisk","Path":"C:\\d.vhdx"},"GuestRequest":)" + kMvdAdd + "}";
  t::Result r = t::modify(sys, attach);  // refused by default, as real HCS
  CHECK_HR(r.hr, HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION);
  Json st = t::simState(sys);
  CHECK(st.get("HotAdded")->asInt() == 0);  // nothing applied, not even the host half
  // a host-only request is fine
  std::string hostOnly = attach.substr(0, attach.find(",\"GuestRequest\"")) + "}";
  CHECK_HR(t::modify(sys, hostOnly).hr, 0);
  t::configure(R"({"guestRequestWithoutGuestConnection":"accept"})");  // the deviation, for tests
  CHECK_HR(t::modify(sys, R"({"GuestRequest":)" + std::string(kMvdAdd) + "}").hr, 0);
  t::configure(R"({"reset":true})");  // restores the default
  sys = created("vm-r2", t::lcowBridgeDoc(), rid);
  start(sys);
  CHECK_HR(t::modify(sys, R"({"GuestRequest":{"RequestType":"Remove","ResourceType":"MappedVirtualDisk","Settings":{"MountPath":"/x"}}})").hr,
           HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION);
  CHECK_HR(HcsSimConfigure(t::u16(R"({"guestRequestWithoutGuestConnection":"maybe"})").c_str()), HCS_E_INVALIDARG);
}

TEST(gcs_bridge_faults) {
  Host h;
  std::string rid;
  HCS_SYSTEM sys = created("vm-f", t::lcowBridgeDoc(), rid);
  CHECK_HR(t::modify(sys, "{}").hr, HCS_E_INVALID_STATE);
  int g = bootLcow(h, rid, sys);
  // fail a chosen guest request (by resource type), nothing applied
  t::configure(R"({"faults":[{"fn":"bridge:ModifySettings","resourceType":"VPMem*","hr":-2147024809,"message":"nope"}]})");
  Json r = rpc(g, "ModifySettings", modifyBody(R"({"ResourceType":"VPMemDevice","Settings":{"MountPath":"/p0"}})"), 1);
  CHECK_EQ(r.get("Result")->asInt(), int64_t(-2147024809));
  CHECK_EQ(r.get("ErrorMessage")->asString(), std::string("nope"));
  // other types are not affected
  r = rpc(g, "ModifySettings", modifyBody(R"({"ResourceType":"MappedDirectory","Settings":{"MountPath":"/d","ShareName":"x"}})"), 2);
  CHECK_EQ(r.get("Result")->asInt(), int64_t(gcs::kEFail));  // no such Plan9 share
  // a response with an unknown id
  t::configure(R"({"faults":[{"fn":"bridge:ModifySettings","nth":1,"unknownId":true}]})");
  uint64_t gotId = 0;
  rpc(g, "ModifySettings", modifyBody(R"({"ResourceType":"Bogus"})"), 3, &gotId);
  CHECK(gotId != 3);
  // an oversized response
  t::configure(R"({"faults":[{"fn":"bridge:ModifySettings","nth":1,"oversized":true}]})");
  sendAll(g, gcs::encode(gcs::requestTypeOf("ModifySettings"), 4, modifyBody(R"({"ResourceType":"Bogus"})")));
  gcs::Message m;
  CHECK(readMessage(g, m));
  CHECK(m.body.size() + 16 > gcs::kHostMaxMessage && m.id == 4);
  // a response whose body is not JSON
  t::configure(R"({"faults":[{"fn":"bridge:ModifySettings","nth":1,"badJson":true}]})");
  sendAll(g, gcs::encode(gcs::requestTypeOf("ModifySettings"), 6, modifyBody(R"({"ResourceType":"Bogus"})")));
  CHECK(readMessage(g, m));
  {
    Json parsedBody;
    std::string parseErr;
    CHECK(m.id == 6 && !parseJson(m.body, parsedBody, parseErr));
  }
  // a delayed response comes no sooner than its delay
  t::configure(R"({"faults":[{"fn":"bridge:ModifySettings","nth":1,"delayMs":200}]})");
  auto sent = std::chrono::steady_clock::now();
  r = rpc(g, "ModifySettings", modifyBody(R"({"ResourceType":"Bogus"})"), 5);
  auto elapsedMs = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - sent).count();
  if (elapsedMs < 195) t::report(__FILE__, __LINE__, "delayed answer after " + std::to_string(elapsedMs) + " ms: " + toJson(r));
  // a hang until releaseHangs: a later request overtakes it (responses match by id)
  t::configure(R"({"faults":[{"fn":"bridge:ModifySettings","nth":1,"hang":true}]})");
  sendAll(g, gcs::encode(gcs::requestTypeOf("ModifySettings"), 7, modifyBody(R"({"ResourceType":"Bogus"})")));
  r = rpc(g, "ModifySettings", modifyBody(R"({"ResourceType":"Bogus"})"), 8);
  t::configure(R"({"releaseHangs":true})");
  CHECK(readMessage(g, m) && m.id == 7);
  // an unsolicited notification
  t::configure(R"({"guestNotify":{"systemId":"vm-f"}})");
  CHECK(readMessage(g, m) && m.type == gcs::kContainerNotification && m.id == 0);
  CHECK(parse(m.body).get("Type")->asString() == "UnexpectedExit");
  HRESULT hr = HcsSimConfigure(t::u16(R"({"guestNotify":{"systemId":"nope"}})").c_str());
  CHECK_HR(hr, HCS_E_INVALIDARG);
  // drop the connection mid-RPC: EOF, and the guest redials
  int lg = h.listen(rid, gcs::kLcowGcsService);
  t::configure(R"({"faults":[{"fn":"bridge:ModifySettings","nth":1,"drop":true}]})");
  sendAll(g, gcs::encode(gcs::requestTypeOf("ModifySettings"), 9, modifyBody(kMvdAdd)));
  char c;
  CHECK(readable(g, 10000) && recv(g, &c, 1, 0) == 0);
  close(g);
  int g2 = acceptWithin(lg);
  CHECK(g2 >= 0);
  // the new connection must negotiate again
  r = rpc(g2, "ModifySettings", modifyBody(R"({"ResourceType":"Bogus"})"), 0);
  CHECK_EQ(r.get("Result")->asInt(), int64_t(gcs::kENotImpl));
  close(g2);
  close(lg);
  // fault validation
  for (const char *badCfg : {R"({"faults":[{"fn":"HcsModifyComputeSystem","drop":true}]})",
                             R"({"faults":[{"fn":"bridge:Nope"}]})",
                             R"({"faults":[{"fn":"bridge:Create","resourceType":"x"}]})",
                             R"({"faults":[{"fn":"bridge:ModifySettings","drop":true,"hang":true}]})"})
    CHECK_HR(HcsSimConfigure(t::u16(badCfg).c_str()), HCS_E_INVALIDARG);
  terminate(sys);
}

TEST(gcs_never_dials_and_stats) {
  Host h;
  t::configure(R"({"guestDial":"never"})");
  std::string rid;
  HCS_SYSTEM sys = created("vm-n", t::wcowBridgeDoc(), rid);
  int lg = h.listen(rid, gcs::kWcowGcsService);
  start(sys);
  CHECK(acceptWithin(lg, 300) < 0);
  t::configure(R"({"guestDial":"auto"})");
  int g = acceptWithin(lg);
  CHECK(g >= 0);
  PWSTR out = nullptr;
  CHECK_HR(HcsSimQuery(&out), 0);
  Json q = parse(hcssim::utf16ToUtf8(out));
  LocalFree(out);
  CHECK(q.get("Guest") && q.get("Guest")->get("Vms")->asInt() >= 1);
  close(g);
  close(lg);
  terminate(sys);
}

TEST(gcs_crash_fault_and_state_file_redial) {
  Host h;
  std::string rid;
  HCS_SYSTEM sys = created("vm-c", t::lcowBridgeDoc(), rid);
  int g = bootLcow(h, rid, sys);
  // the VM crashes as the request arrives: no answer, EOF, the system is stopped
  t::configure(R"({"faults":[{"fn":"bridge:ModifySettings","nth":1,"crash":true,"attribution":"GuestCrash"}]})");
  sendAll(g, gcs::encode(gcs::requestTypeOf("ModifySettings"), 1, modifyBody(kMvdAdd)));
  char c;
  CHECK(readable(g, 10000) && recv(g, &c, 1, 0) == 0);
  close(g);
  t::Result p = t::run([&](HCS_OPERATION op) { return HcsGetComputeSystemProperties(sys, op, nullptr); });
  CHECK_EQ(p.json().get("State")->asString(), std::string("Stopped"));
  HcsCloseComputeSystem(sys);
  // a running VM loaded from a state file: its guest redials the GCS bridge (not entropy / log)
  std::string state = h.dir + "/state.json";
  t::configure(R"({"stateFile":")" + state + "\"}");
  HCS_SYSTEM s2 = created("vm-s", t::lcowBridgeDoc(), rid);
  int le = h.listen(rid, gcs::kLcowEntropyService);
  start(s2);
  int e = acceptWithin(le);  // the booting guest
  CHECK(e >= 0);
  t::configure(R"({"guestDial":"never"})");
  close(e);
  close(le);
  t::configure(R"({"stateFile":null})");
  t::configure(R"({"stateFile":")" + state + "\"}");  // reload: vm-s is running in "another process"
  int lg = h.listen(rid, gcs::kLcowGcsService);
  t::configure(R"({"guestDial":"auto"})");
  int b = acceptWithin(lg);
  CHECK(b >= 0);
  if (b >= 0) CHECK(rpc(b, "NegotiateProtocol", kNegotiate, 0).get("Version")->asInt() == 4);
  if (b >= 0) close(b);
  close(lg);
  terminate(s2);
  t::configure(R"({"reset":true,"stateFile":null})");  // before the directory goes
}
