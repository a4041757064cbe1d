// VirtualPci model and host layer API of the simulator.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "harness.h"
#include "hostlayers.h"

using hcssim::Json;

namespace {
const char *const kGpu = R"(PCIP\\VEN_10DE&DEV_1EB8&SUBSYS_12A210DE&REV_A1\\6&1a2b3c4d&0&0)";
const char *const kGuid = "3f1a9c1e-8b7d-4c55-9a52-0e2b6d9e7a10";
const char *const kGuid2 = "4f1a9c1e-8b7d-4c55-9a52-0e2b6d9e7a10";

std::string vpciAdd(const std::string &guid, const std::string &path, bool guest) {
  std::string doc = R"({"ResourcePath":"VirtualMachine/Devices/VirtualPci/)" + guid +
                    R"(","RequestType":"Add","Settings":{"Functions":[{"DeviceInstancePath":")" + path + R"(","VirtualFunction":2}]})";
  if (guest) doc += R"(,"GuestRequest":{"RequestType":"Add","ResourceType":"VPCIDevice","Settings":{"VMBusGUID":")" + guid + R"("}})";
  return doc + "}";
}
std::string vpciRemove(const std::string &guid) {
  return R"({"ResourcePath":"VirtualMachine/Devices/VirtualPci/)" + guid + R"(","RequestType":"Remove"})";
}

Json hostLayers() {
  PWSTR out = nullptr;
  HRESULT hr = HcsSimHostLayers(&out);
  CHECK_HR(hr, 0);
  Json j;
  std::string err;
  hcssim::parseJson(hcssim::utf16ToUtf8(out), j, err);
  LocalFree(out);
  return j;
}
}  // namespace

TEST(vpci_add_share_remove) {
  t::reset();
  HCS_SYSTEM a = t::createRunning("v1", t::lcowDoc());
  HCS_SYSTEM b = t::createRunning("v2", t::lcowDoc());
  CHECK_HR(t::modify(a, vpciAdd(kGuid, kGpu, true)).hr, 0);
  Json st = t::simState(a);
  CHECK(st.get("Devices")->get("VirtualPci")->get(kGuid)->get("Guest")->asBool());
  CHECK_EQ(st.get("HotAdded")->asInt(), static_cast<int64_t>(2));
  // one assignment per function on the host
  CHECK_HR(t::modify(b, vpciAdd(kGuid2, kGpu, false)).hr, HCS_E_BUSY_WIN32);
  CHECK_HR(t::modify(a, vpciAdd(kGuid2, kGpu, false)).hr, HCS_E_BUSY_WIN32);
  // unknown device, bad shape
  CHECK_HR(t::modify(a, vpciAdd(kGuid2, R"(PCIP\\NOPE)", false)).hr, HCS_E_NOT_FOUND);
  CHECK_HR(t::modify(a, R"({"ResourcePath":"VirtualMachine/Devices/VirtualPci/x","RequestType":"Add","Settings":{}})").hr, HCS_E_INVALID_JSON);
  // guest removal is refused; the host removal takes the guest view with it
  CHECK_HR(t::modify(a, std::string(R"({"GuestRequest":{"RequestType":"Remove","ResourceType":"VPCIDevice","Settings":{"VMBusGUID":")") + kGuid + "\"}}}").hr,
           HCS_E_NOT_SUPPORTED_WIN32);
  CHECK_HR(t::modify(a, vpciRemove(kGuid)).hr, 0);
  CHECK_HR(t::modify(a, vpciRemove(kGuid)).hr, HCS_E_NOT_FOUND);
  CHECK_EQ(t::simState(a).get("HotAdded")->asInt(), static_cast<int64_t>(0));
  CHECK_HR(t::modify(b, vpciAdd(kGuid2, kGpu, false)).hr, 0);
  CHECK_HR(t::modify(b, vpciRemove(kGuid2)).hr, 0);
  HcsCloseComputeSystem(a);
  HcsCloseComputeSystem(b);
}

TEST(host_layers_model) {
  t::reset();
  char tmpl[] = "/tmp/hcssim-layers-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string parent = dir + "/base", layer = dir + "/scratch", target = dir + "/mnt/rootfs";
  mkdir(parent.c_str(), 0755);
  mkdir(layer.c_str(), 0755);
  mkdir((dir + "/mnt").c_str(), 0755);
  std::ofstream(layer + "/sandbox.vhdx").put('x');
  std::u16string id = t::u16(layer), p16 = t::u16(parent), root = t::u16(target);
  DriverInfo info{1, u""};
  GUID g{};
  CHECK_HR(NameToGuid(u"base", &g), 0);
  WC_LAYER_DESCRIPTOR desc{g, 0, p16.c_str()};
  CHECK_HR(PrepareLayer(&info, id.c_str(), &desc, 1), static_cast<HRESULT>(0x80070015));  // not activated
  CHECK_HR(ActivateLayer(&info, id.c_str()), 0);
  CHECK_HR(ActivateLayer(&info, id.c_str()), HCS_E_ALREADY_EXISTS_WIN32);
  WC_LAYER_DESCRIPTOR wrong{GUID{}, 0, p16.c_str()};
  CHECK_HR(PrepareLayer(&info, id.c_str(), &wrong, 1), HCS_E_INVALIDARG);
  CHECK_HR(PrepareLayer(&info, id.c_str(), &desc, 1), 0);
  SIZE_T len = 0;
  CHECK_HR(GetLayerMountPath(&info, id.c_str(), &len, nullptr), 0);
  std::u16string small(2, u'\0');
  SIZE_T two = 2;
  CHECK_HR(GetLayerMountPath(&info, id.c_str(), &two, &small[0]), static_cast<HRESULT>(0x8007007A));
  CHECK_EQ(two, len);
  std::u16string buf(len, u'\0');
  CHECK_HR(GetLayerMountPath(&info, id.c_str(), &len, &buf[0]), 0);
  std::string volume = hcssim::utf16ToUtf8(buf.c_str());
  CHECK(volume.rfind("\\\\?\\Volume{", 0) == 0);
  std::u16string target16 = t::u16(volume + "\\");
  CHECK_HR(BfSetupFilter(nullptr, 0x40, root.c_str(), target16.c_str(), nullptr, 0), 0);
  CHECK_HR(BfSetupFilter(nullptr, 0x40, root.c_str(), target16.c_str(), nullptr, 0), HCS_E_INVALIDARG);
  CHECK_HR(UnprepareLayer(&info, id.c_str()), HCS_E_BUSY_WIN32);  // still bound
  CHECK_HR(DeactivateLayer(&info, id.c_str()), HCS_E_BUSY_WIN32);  // still prepared
  CHECK_EQ(hostLayers().get("Bindings")->items().size(), static_cast<size_t>(1));
  CHECK_HR(BfRemoveMapping(nullptr, root.c_str()), 0);
  CHECK_HR(BfRemoveMapping(nullptr, root.c_str()), HCS_E_NOT_FOUND);
  CHECK_HR(UnprepareLayer(&info, id.c_str()), 0);
  CHECK_HR(DeactivateLayer(&info, id.c_str()), 0);
  CHECK_HR(DeactivateLayer(&info, id.c_str()), HCS_E_NOT_FOUND);
  Json st = hostLayers();
  CHECK_EQ(st.get("Layers")->items().size() + st.get("Bindings")->items().size(), static_cast<size_t>(0));
  // faults apply to the layer functions too
  t::configure(R"({"faults":[{"fn":"ActivateLayer","nth":1}]})");
  CHECK_HR(ActivateLayer(&info, id.c_str()), HCS_E_FAIL);
  t::configure(R"({"clearFaults":true})");
  std::system(("rm -rf " + dir).c_str());
}
