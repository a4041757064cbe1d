// Device-tree and guest-model validation through HcsModifyComputeSystem.
#include <string>

#include "harness.h"

using hcssim::Json;

namespace {
const std::string kScsi = std::string("VirtualMachine/Devices/Scsi/") + t::kCtrl0 + "/Attachments/";

std::string scsiAdd(int lun, const std::string &path = "C:\\\\l\\\\layer.vhd") {
  return R"({"ResourcePath":")" + kScsi + std::to_string(lun) +
         R"(","RequestType":"Add","Settings":{"Type":"VirtualDisk","Path":")" + path + R"(","ReadOnly":true}})";
}
std::string scsiRemove(int lun) { return R"({"ResourcePath":")" + kScsi + std::to_string(lun) + R"(","RequestType":"Remove"})"; }
std::string guest(const std::string &rt, const std::string &type, const std::string &settings) {
  return R"({"GuestRequest":{"RequestType":")" + rt + R"(","ResourceType":")" + type + R"(","Settings":)" + settings + "}}";
}

void expect(HCS_SYSTEM s, const std::string &doc, HRESULT hr, const char *file, int line) {
  t::Result r = t::modify(s, doc);
  if (r.hr != hr) t::report(file, line, "modify " + doc + " = " + t::hex(r.hr) + " (expected " + t::hex(hr) + ") " + r.doc);
  if (hr < 0) {
    Json j = r.json();
    if (!j.get("Error") || j.get("Error")->asInt() != hr) t::report(file, line, "error document mismatch: " + r.doc);
  }
}
#define EXPECT(doc, hr) expect(s, doc, hr, __FILE__, __LINE__)

size_t count(const Json &st, const char *section, const char *list) {
  const Json *sec = st.get(section);
  const Json *l = sec ? sec->get(list) : nullptr;
  return l ? l->items().size() : 999;
}
int64_t hot(HCS_SYSTEM s) { return t::simState(s).get("HotAdded")->asInt(); }
}  // namespace

TEST(scsi_host_and_guest_lcow) {
  HCS_SYSTEM s = t::createRunning("lcow", t::lcowDoc());
  EXPECT(scsiAdd(2), 0);
  EXPECT(scsiAdd(2), HCS_E_ALREADY_EXISTS_WIN32);
  EXPECT(scsiAdd(64), HCS_E_INVALIDARG);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/Scsi/0110f83b-de10-5172-a266-78bca56bf50a/Attachments/1","RequestType":"Add","Settings":{"Type":"VirtualDisk","Path":"x"}})",
         HCS_E_NOT_FOUND);
  EXPECT(R"({"ResourcePath":")" + kScsi + R"(3","RequestType":"Add","Settings":{"Type":"Floppy","Path":"x"}})", HCS_E_INVALID_JSON);
  EXPECT(R"({"ResourcePath":")" + kScsi + R"(3","RequestType":"Add","Settings":{"Type":"VirtualDisk","Path":"x","Bogus":1}})", HCS_E_INVALID_JSON);
  EXPECT(R"({"ResourcePath":")" + kScsi + R"(3","RequestType":"Add","Settings":{"Type":"VirtualDisk","Path":"x","ReadOnly":"yes"}})", HCS_E_INVALID_JSON);
  EXPECT(R"({"ResourcePath":")" + kScsi + R"(3","RequestType":"Add","Settings":{"Type":"VirtualDisk"}})", HCS_E_INVALID_JSON);
  EXPECT(R"({"ResourcePath":")" + kScsi + R"(3","RequestType":"Update","Settings":{"Type":"VirtualDisk","Path":"x"}})", HCS_E_INVALID_JSON);
  EXPECT(R"({"ResourcePath":")" + kScsi + R"(03","RequestType":"Remove"})", HCS_E_INVALID_JSON);
  EXPECT(scsiRemove(3), HCS_E_NOT_FOUND);
  // guest mount (appendix A1), Lun 2 on controller 0 (Controller omitted)
  std::string mount = R"({"MountPath":"/run/mounts/scsi/m1","Lun":2,"ReadOnly":true,"Options":["ro"]})";
  EXPECT(guest("Add", "MappedVirtualDisk", mount), 0);
  EXPECT(guest("Add", "MappedVirtualDisk", mount), HCS_E_ALREADY_EXISTS_WIN32);
  EXPECT(guest("Add", "MappedVirtualDisk", R"({"MountPath":"/run/mounts/scsi/m2","Lun":5})"), HCS_E_NOT_FOUND);
  EXPECT(guest("Add", "MappedVirtualDisk", R"({"MountPath":"/run/mounts/scsi/m2","Lun":2,"Controller":1})"), HCS_E_NOT_FOUND);
  EXPECT(guest("Add", "MappedVirtualDisk", R"({"MountPath":"/m","Lun":"2"})"), HCS_E_INVALID_JSON);
  EXPECT(guest("Add", "MappedVirtualDisk", R"({"ContainerPath":"c:\\m","Lun":2})"), HCS_E_INVALID_JSON);  // WCOW field on LCOW
  EXPECT(guest("Add", "SCSIDevice", R"({"Lun":2})"), HCS_E_INVALID_JSON);
  Json st = t::simState(s);
  CHECK_EQ(count(st, "Guest", "MappedVirtualDisks"), static_cast<size_t>(1));
  CHECK(*st.get("Devices")->get("Scsi")->get(t::kCtrl0)->get("Attachments")->get("2")->get("Path") ==
        Json::string("C:\\l\\layer.vhd"));
  CHECK_EQ(st.get("HotAdded")->asInt(), 2);
  EXPECT(guest("Remove", "SCSIDevice", R"({"Lun":2})"), HCS_E_BUSY_WIN32);
  EXPECT(guest("Remove", "MappedVirtualDisk", R"({"MountPath":"/run/mounts/scsi/m1","Lun":2,"ReadOnly":true})"), 0);
  EXPECT(guest("Remove", "MappedVirtualDisk", R"({"MountPath":"/run/mounts/scsi/m1","Lun":2,"ReadOnly":true})"), HCS_E_NOT_FOUND);
  EXPECT(guest("Remove", "SCSIDevice", R"({"Lun":2})"), 0);
  EXPECT(guest("Remove", "SCSIDevice", R"({"Lun":2})"), HCS_E_NOT_FOUND);
  EXPECT(guest("Add", "MappedVirtualDisk", mount), HCS_E_INVALID_STATE);  // unplugged
  EXPECT(scsiRemove(2), 0);
  EXPECT(scsiRemove(2), HCS_E_NOT_FOUND);
  CHECK_EQ(hot(s), 0);
  // combined document whose guest half fails: the host half stays applied
  std::string combined = R"({"ResourcePath":")" + kScsi +
                         R"(7","RequestType":"Add","Settings":{"Type":"VirtualDisk","Path":"C:\\s.vhdx"},"GuestRequest":{"RequestType":"Add","ResourceType":"MappedVirtualDisk","Settings":{"MountPath":"/run/gcs/c/x","Lun":8}}})";
  EXPECT(combined, HCS_E_NOT_FOUND);
  st = t::simState(s);
  CHECK(st.get("Devices")->get("Scsi")->get(t::kCtrl0)->get("Attachments")->get("7") != nullptr);
  CHECK_EQ(count(st, "Guest", "MappedVirtualDisks"), static_cast<size_t>(0));
  EXPECT(scsiRemove(7), 0);
  // a combined document with a guest shape error applies nothing
  std::string badGuest = R"({"ResourcePath":")" + kScsi +
                         R"(7","RequestType":"Add","Settings":{"Type":"VirtualDisk","Path":"C:\\s.vhdx"},"GuestRequest":{"RequestType":"Add","ResourceType":"MappedVirtualDisk","Settings":{"MountPath":"/x","Bad":1}}})";
  EXPECT(badGuest, HCS_E_INVALID_JSON);
  CHECK_EQ(hot(s), 0);
  // both halves succeed
  std::string good = R"({"ResourcePath":")" + kScsi +
                     R"(7","RequestType":"Add","Settings":{"Type":"VirtualDisk","Path":"C:\\s.vhdx"},"GuestRequest":{"RequestType":"Add","ResourceType":"MappedVirtualDisk","Settings":{"MountPath":"/run/gcs/c/x","Lun":7,"EnsureFilesystem":true,"Filesystem":"ext4"}}})";
  EXPECT(good, 0);
  CHECK_EQ(hot(s), 2);
  HcsCloseComputeSystem(s);
}

TEST(request_shape_errors) {
  HCS_SYSTEM s = t::createRunning("shape", t::lcowDoc());
  const char *bad[] = {
      "{}",
      "[]",
      "{bad json",
      R"({"ResourcePath":"VirtualMachine/Devices/Nope","RequestType":"Add"})",
      R"({"ResourcePath":"VirtualMachine/Devices/Scsi/not-a-guid/Attachments/1","RequestType":"Remove"})",
      R"({"ResourcePath":"VirtualMachine/Devices/Scsi/df6d0690-79e5-55b6-a5ec-c1e2f77f580a/Attachments/x","RequestType":"Remove"})",
      R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/1/Bogus/2","RequestType":"Remove"})",
      R"({"ResourcePath":"VirtualMachine/Devices/MappedPipes/","RequestType":"Add"})",
      R"({"ResourcePath":"VirtualMachine/Devices/Plan9/Shares","RequestType":"Add"})",
      R"({"ResourcePath":"VirtualMachine/Devices/Plan9/Shares"})",
      R"({"ResourcePath":1,"RequestType":"Add"})",
      R"({"ResourcePath":"VirtualMachine/Devices/Plan9/Shares","RequestType":"Add","Settings":{"Name":"0","Path":"p","Port":564},"Extra":1})",
      R"({"GuestRequest":{"RequestType":"Add","ResourceType":"Bogus","Settings":{}}})",
      R"({"GuestRequest":{"RequestType":"Add","ResourceType":"WCOWBlockCims","Settings":{}}})",
      R"({"GuestRequest":{"RequestType":"Update","ResourceType":"MappedVirtualDisk","Settings":{"MountPath":"/m"}}})",
      R"({"GuestRequest":{"RequestType":"Add","ResourceType":"MappedVirtualDisk"}})",
      R"({"GuestRequest":{"RequestType":"Add","ResourceType":"MappedVirtualDisk","Settings":[]}})",
      R"({"GuestRequest":"x"})",
      R"({"RequestType":"Add","GuestRequest":{"RequestType":"Add","ResourceType":"VPMemDevice","Settings":{"MountPath":"/m"}}})",
      R"({"GuestRequest":{"RequestType":"Add","ResourceType":"VPMemDevice","Settings":{"MountPath":"/m","MappingInfo":{"DeviceOffsetInBytes":-1}}}})",
      R"({"GuestRequest":{"RequestType":"Add","ResourceType":"CombinedLayers","Settings":{"ContainerRootPath":"/r"}}})",
      R"({"GuestRequest":{"RequestType":"Add","ResourceType":"CombinedLayers","Settings":{"ContainerRootPath":"/r","Layers":[{"Path":"/a","X":1}]}}})",
  };
  for (const char *d : bad) EXPECT(d, HCS_E_INVALID_JSON);
  CHECK_EQ(hot(s), 0);
  HcsCloseComputeSystem(s);
}

TEST(vpmem_devices_and_mappings) {
  HCS_SYSTEM s = t::createRunning("pmem", t::lcowDoc());
  // appendix A4 (default mode, combined)
  std::string dev1 =
      R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/1","RequestType":"Add","Settings":{"HostPath":"C:\\snap\\7\\layer.vhd","ReadOnly":true,"ImageFormat":"Vhd1"},"GuestRequest":{"RequestType":"Add","ResourceType":"VPMemDevice","Settings":{"DeviceNumber":1,"MountPath":"/run/layers/p1"}}})";
  EXPECT(dev1, 0);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/1","RequestType":"Add","Settings":{"HostPath":"x","ImageFormat":"Vhd1"}})", HCS_E_ALREADY_EXISTS_WIN32);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/4","RequestType":"Add","Settings":{"HostPath":"x","ImageFormat":"Vhd1"}})", HCS_E_INVALIDARG);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/2","RequestType":"Add","Settings":{"HostPath":"x","ImageFormat":"Vhd2"}})", HCS_E_INVALID_JSON);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/2","RequestType":"Add","Settings":{"HostPath":"x"}})", HCS_E_INVALID_JSON);
  // multi-mapped (A4 second example): device 0 implicit
  std::string map0 =
      R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/0/Mappings/16777216","RequestType":"Add","Settings":{"HostPath":"C:\\snap\\8\\layer.vhd","ImageFormat":"Vhd1"},"GuestRequest":{"RequestType":"Add","ResourceType":"VPMemDevice","Settings":{"MountPath":"/run/layers/p0-16777216-5242880","MappingInfo":{"DeviceOffsetInBytes":16777216,"DeviceSizeInBytes":5242880}}}})";
  EXPECT(map0, 0);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/0/Mappings/16777216","RequestType":"Add","Settings":{"HostPath":"y","ImageFormat":"Vhd1"}})", HCS_E_ALREADY_EXISTS_WIN32);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/0/Mappings/100","RequestType":"Add","Settings":{"HostPath":"y","ImageFormat":"Vhd1"}})", HCS_E_INVALIDARG);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/0/Mappings/1073741824","RequestType":"Add","Settings":{"HostPath":"y","ImageFormat":"Vhd1"}})", HCS_E_INVALIDARG);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/0/Mappings/0","RequestType":"Add","Settings":{"HostPath":"y","ImageFormat":"Vhd1","ReadOnly":true}})", HCS_E_INVALID_JSON);
  EXPECT(guest("Add", "VPMemDevice", R"({"MountPath":"/run/layers/x","MappingInfo":{"DeviceOffsetInBytes":0,"DeviceSizeInBytes":1}})"), HCS_E_NOT_FOUND);
  EXPECT(guest("Add", "VPMemDevice", R"({"DeviceNumber":2,"MountPath":"/run/layers/p2"})"), HCS_E_NOT_FOUND);
  EXPECT(guest("Add", "VPMemDevice", R"({"DeviceNumber":0,"MountPath":"/run/layers/p1","MappingInfo":{"DeviceOffsetInBytes":16777216}})"), HCS_E_ALREADY_EXISTS_WIN32);
  Json st = t::simState(s);
  const Json *devs = st.get("Devices")->get("VirtualPMem")->get("Devices");
  CHECK(devs->get("1")->get("HostPath") && devs->get("1")->get("ImageFormat")->asString() == "Vhd1");
  CHECK(devs->get("0")->get("HostPath") == nullptr);
  CHECK(devs->get("0")->get("Mappings")->get("16777216")->get("HostPath")->asString() == "C:\\snap\\8\\layer.vhd");
  CHECK_EQ(st.get("HotAdded")->asInt(), 4);
  // the device with a mapping cannot be removed; implicit device 0 is not removable at all
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/0","RequestType":"Remove"})", HCS_E_NOT_FOUND);
  // removal: guest first, then host (combined remove applies host then guest, which also works)
  EXPECT(guest("Remove", "VPMemDevice", R"({"MountPath":"/run/layers/p0-16777216-5242880","MappingInfo":{"DeviceOffsetInBytes":16777216,"DeviceSizeInBytes":5242880}})"), 0);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/0/Mappings/16777216","RequestType":"Remove"})", 0);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/0/Mappings/16777216","RequestType":"Remove"})", HCS_E_NOT_FOUND);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/1","RequestType":"Remove","GuestRequest":{"RequestType":"Remove","ResourceType":"VPMemDevice","Settings":{"DeviceNumber":1,"MountPath":"/run/layers/p1"}}})", 0);
  st = t::simState(s);
  CHECK(st.get("Devices")->get("VirtualPMem")->get("Devices")->members().empty());
  CHECK_EQ(st.get("HotAdded")->asInt(), 0);
  // a device with a mapping: Remove -> busy
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/3","RequestType":"Add","Settings":{"HostPath":"d","ImageFormat":"Vhdx"}})", 0);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/3/Mappings/0","RequestType":"Add","Settings":{"HostPath":"m","ImageFormat":"Vhd1"}})", 0);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/3","RequestType":"Remove"})", HCS_E_BUSY_WIN32);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/3/Mappings/0","RequestType":"Remove"})", 0);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/3","RequestType":"Remove"})", 0);
  CHECK_EQ(hot(s), 0);
  HcsCloseComputeSystem(s);
}

TEST(plan9_and_mapped_directories) {
  HCS_SYSTEM s = t::createRunning("p9", t::lcowDoc());
  // appendix A5
  std::string add =
      R"({"ResourcePath":"VirtualMachine/Devices/Plan9/Shares","RequestType":"Add","Settings":{"Name":"3","AccessName":"3","Path":"C:\\data\\","Port":564,"Flags":133,"AllowedFiles":["app.conf"]},"GuestRequest":{"RequestType":"Add","ResourceType":"MappedDirectory","Settings":{"MountPath":"/run/gcs/c/CID/mounts/m2","Port":564,"ShareName":"3","ReadOnly":true}}})";
  EXPECT(add, 0);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/Plan9/Shares","RequestType":"Add","Settings":{"Name":"3","Path":"C:\\x","Port":564}})", HCS_E_ALREADY_EXISTS_WIN32);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/Plan9/Shares","RequestType":"Add","Settings":{"Name":"4","Path":"C:\\x","Port":563}})", HCS_E_INVALIDARG);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/Plan9/Shares","RequestType":"Add","Settings":{"Name":"4","Path":"C:\\x"}})", HCS_E_INVALID_JSON);
  EXPECT(guest("Add", "MappedDirectory", R"({"MountPath":"/other","ShareName":"3","Port":564})"), HCS_E_ALREADY_EXISTS_WIN32);
  EXPECT(guest("Add", "MappedDirectory", R"({"MountPath":"/other","ShareName":"9","Port":564})"), HCS_E_NOT_FOUND);
  EXPECT(guest("Add", "MappedDirectory", R"({"MountPath":"/other","ShareName":"3","Port":1})"), HCS_E_INVALIDARG);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/Plan9/Shares","RequestType":"Remove","Settings":{"Name":"5","AccessName":"5","Port":564}})", HCS_E_NOT_FOUND);
  CHECK_EQ(hot(s), 2);
  std::string remove =
      R"({"ResourcePath":"VirtualMachine/Devices/Plan9/Shares","RequestType":"Remove","Settings":{"Name":"3","AccessName":"3","Port":564},"GuestRequest":{"RequestType":"Remove","ResourceType":"MappedDirectory","Settings":{"MountPath":"/run/gcs/c/CID/mounts/m2","Port":564,"ShareName":"3"}}})";
  EXPECT(remove, 0);
  EXPECT(guest("Remove", "MappedDirectory", R"({"MountPath":"/run/gcs/c/CID/mounts/m2","ShareName":"3"})"), HCS_E_NOT_FOUND);
  CHECK_EQ(hot(s), 0);
  // VSMB is not configured on this LCOW system
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/VirtualSmb/Shares","RequestType":"Add","Settings":{"Name":"s1","Path":"C:\\x"}})", HCS_E_NOT_FOUND);
  HcsCloseComputeSystem(s);
}

TEST(lcow_combined_layers) {
  HCS_SYSTEM s = t::createRunning("layers", t::lcowDoc());
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/0/Mappings/0","RequestType":"Add","Settings":{"HostPath":"C:\\l1","ImageFormat":"Vhd1"},"GuestRequest":{"RequestType":"Add","ResourceType":"VPMemDevice","Settings":{"MountPath":"/run/layers/p0-0-1048576","MappingInfo":{"DeviceOffsetInBytes":0,"DeviceSizeInBytes":1048576}}}})", 0);
  EXPECT(scsiAdd(1), 0);
  EXPECT(guest("Add", "MappedVirtualDisk", R"({"MountPath":"/run/mounts/scsi/m1","Lun":1,"ReadOnly":true,"Options":["ro"]})"), 0);
  EXPECT(scsiAdd(2, "C:\\\\sandbox.vhdx"), 0);
  EXPECT(guest("Add", "MappedVirtualDisk", R"({"MountPath":"/run/gcs/c/CID","Lun":2,"EnsureFilesystem":true,"Filesystem":"ext4"})"), 0);
  std::string layers = R"({"ContainerID":"CID","ContainerRootPath":"/run/gcs/c/CID/rootfs","Layers":[{"Path":"/run/layers/p0-0-1048576"},{"Path":"/run/mounts/scsi/m1"}],"ScratchPath":"/run/gcs/c/CID/scratch/CID"})";
  EXPECT(guest("Add", "CombinedLayers", R"({"ContainerRootPath":"/r2","Layers":[{"Path":"/run/mounts/scsi/m9"}]})"), HCS_E_NOT_FOUND);
  EXPECT(guest("Add", "CombinedLayers", R"({"ContainerRootPath":"/r2","Layers":[{"Path":"/run/mounts/scsi/m1"}],"ScratchPath":"/elsewhere/s"})"), HCS_E_NOT_FOUND);
  EXPECT(guest("Add", "CombinedLayers", layers), 0);
  EXPECT(guest("Add", "CombinedLayers", layers), HCS_E_ALREADY_EXISTS_WIN32);
  // mounts used by the overlay cannot go away first
  EXPECT(guest("Remove", "MappedVirtualDisk", R"({"MountPath":"/run/mounts/scsi/m1","Lun":1})"), HCS_E_BUSY_WIN32);
  EXPECT(guest("Remove", "MappedVirtualDisk", R"({"MountPath":"/run/gcs/c/CID","Lun":2})"), HCS_E_BUSY_WIN32);
  EXPECT(guest("Remove", "VPMemDevice", R"({"MountPath":"/run/layers/p0-0-1048576"})"), HCS_E_BUSY_WIN32);
  CHECK_EQ(hot(s), 7);
  EXPECT(guest("Remove", "CombinedLayers", R"({"ContainerRootPath":"/run/gcs/c/CID/rootfs"})"), 0);
  EXPECT(guest("Remove", "CombinedLayers", R"({"ContainerRootPath":"/run/gcs/c/CID/rootfs"})"), HCS_E_NOT_FOUND);
  EXPECT(guest("Remove", "MappedVirtualDisk", R"({"MountPath":"/run/gcs/c/CID","Lun":2})"), 0);
  EXPECT(guest("Remove", "SCSIDevice", R"({"Lun":2})"), 0);
  EXPECT(scsiRemove(2), 0);
  EXPECT(guest("Remove", "MappedVirtualDisk", R"({"MountPath":"/run/mounts/scsi/m1","Lun":1,"ReadOnly":true})"), 0);
  EXPECT(guest("Remove", "SCSIDevice", R"({"Lun":1})"), 0);
  EXPECT(R"({"ResourcePath":")" + kScsi + R"(1","RequestType":"Remove","Settings":[]})", HCS_E_INVALID_JSON);
  EXPECT(R"({"ResourcePath":")" + kScsi + R"(1","RequestType":"Remove","Settings":{"Path":"ignored"}})", 0);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/VirtualPMem/Devices/0/Mappings/0","RequestType":"Remove","GuestRequest":{"RequestType":"Remove","ResourceType":"VPMemDevice","Settings":{"MountPath":"/run/layers/p0-0-1048576","MappingInfo":{"DeviceOffsetInBytes":0,"DeviceSizeInBytes":1048576}}}})", 0);
  CHECK_EQ(hot(s), 0);
  HcsCloseComputeSystem(s);
}

// The guest tables are indexed (by guest path, share, LUN, combined-layer path): the answers must
// be those of a scan, including after an entry that fed an index is gone.
TEST(guest_table_indexes) {
  HCS_SYSTEM s = t::createRunning("indexes", t::lcowDoc());
  const std::string p9 = "VirtualMachine/Devices/Plan9/Shares";
  EXPECT(R"({"ResourcePath":")" + p9 + R"(","RequestType":"Add","Settings":{"Name":"a","Path":"C:\\a","Port":564}})", 0);
  // a Plan9 share mounted, unmounted, mounted elsewhere
  EXPECT(guest("Add", "MappedDirectory", R"({"MountPath":"/run/p/1","ShareName":"a","Port":564})"), 0);
  EXPECT(guest("Add", "MappedDirectory", R"({"MountPath":"/run/p/2","ShareName":"a","Port":564})"), HCS_E_ALREADY_EXISTS_WIN32);
  EXPECT(guest("Remove", "MappedDirectory", R"({"MountPath":"/run/p/1","ShareName":"a"})"), 0);
  EXPECT(guest("Add", "MappedDirectory", R"({"MountPath":"/run/p/2","ShareName":"a","Port":564})"), 0);
  // one LUN mounted at two paths: the device stays busy until both are gone
  EXPECT(scsiAdd(3), 0);
  EXPECT(guest("Add", "MappedVirtualDisk", R"({"MountPath":"/run/d/","Lun":3,"Partition":1})"), 0);
  EXPECT(guest("Add", "MappedVirtualDisk", R"({"MountPath":"/run/d1","Lun":3,"Partition":2})"), 0);
  EXPECT(guest("Add", "MappedVirtualDisk", R"({"MountPath":"/run/p/2","Lun":3,"Partition":3})"), HCS_E_ALREADY_EXISTS_WIN32);
  EXPECT(guest("Add", "MappedVirtualDisk", R"({"MountPath":"/run/d10","Lun":3,"Partition":4})"), 0);
  EXPECT(guest("Remove", "MappedVirtualDisk", R"({"MountPath":"/run/d10","Lun":3})"), 0);
  // scratch on a disk: under "/run/d/" (trailing separator) or "/run/d1", not under "/run/d" or "/run/d1x"
  const std::string layer = R"({"Path":"/run/p/2"})";
  EXPECT(guest("Add", "CombinedLayers", R"({"ContainerRootPath":"/c/1","Layers":[)" + layer + R"(],"ScratchPath":"/run/d1x/s"})"), HCS_E_NOT_FOUND);
  EXPECT(guest("Add", "CombinedLayers", R"({"ContainerRootPath":"/c/1","Layers":[)" + layer + R"(],"ScratchPath":"/run/d"})"), HCS_E_NOT_FOUND);
  EXPECT(guest("Add", "CombinedLayers", R"({"ContainerRootPath":"/c/1","Layers":[)" + layer + R"(],"ScratchPath":"/run/d/s/1"})"), 0);
  EXPECT(guest("Add", "CombinedLayers", R"({"ContainerRootPath":"/run/d1\\r","Layers":[)" + layer + R"(],"ScratchPath":"/run/d1\\s"})"), 0);
  // busy: each mount a combined entry uses (by prefix, either separator); two entries share the layer
  EXPECT(guest("Remove", "MappedVirtualDisk", R"({"MountPath":"/run/d/","Lun":3})"), HCS_E_BUSY_WIN32);
  EXPECT(guest("Remove", "MappedVirtualDisk", R"({"MountPath":"/run/d1","Lun":3})"), HCS_E_BUSY_WIN32);
  EXPECT(guest("Remove", "MappedDirectory", R"({"MountPath":"/run/p/2"})"), HCS_E_BUSY_WIN32);
  EXPECT(guest("Remove", "SCSIDevice", R"({"Lun":3})"), HCS_E_BUSY_WIN32);
  EXPECT(guest("Remove", "CombinedLayers", R"({"ContainerRootPath":"/c/1"})"), 0);
  EXPECT(guest("Remove", "MappedVirtualDisk", R"({"MountPath":"/run/d/","Lun":3})"), 0);
  EXPECT(guest("Remove", "MappedDirectory", R"({"MountPath":"/run/p/2"})"), HCS_E_BUSY_WIN32);
  EXPECT(guest("Remove", "SCSIDevice", R"({"Lun":3})"), HCS_E_BUSY_WIN32);
  EXPECT(guest("Remove", "CombinedLayers", R"({"ContainerRootPath":"/run/d1\\r"})"), 0);
  EXPECT(guest("Remove", "MappedVirtualDisk", R"({"MountPath":"/run/d1","Lun":3})"), 0);
  EXPECT(guest("Remove", "MappedDirectory", R"({"MountPath":"/run/p/2"})"), 0);
  EXPECT(guest("Remove", "SCSIDevice", R"({"Lun":3})"), 0);
  EXPECT(scsiRemove(3), 0);
  EXPECT(R"({"ResourcePath":")" + p9 + R"(","RequestType":"Remove","Settings":{"Name":"a"}})", 0);
  EXPECT(R"({"ResourcePath":")" + p9 + R"(","RequestType":"Add","Settings":{"Name":"a","Path":"C:\\a","Port":564}})", 0);
  EXPECT(R"({"ResourcePath":")" + p9 + R"(","RequestType":"Remove","Settings":{"Name":"a"}})", 0);
  CHECK_EQ(hot(s), 0);
  HcsCloseComputeSystem(s);
}

TEST(wcow_vsmb_pipes_and_layers) {
  HCS_SYSTEM s = t::createRunning("wcow", t::wcowDoc());
  const std::string vsmb = "VirtualMachine/Devices/VirtualSmb/Shares";
  // appendix A3
  EXPECT(R"({"ResourcePath":")" + vsmb + R"(","RequestType":"Add","Settings":{"Name":"s1","Path":"C:\\layers\\abc","Options":{"ReadOnly":true,"ShareRead":true,"CacheIo":true,"TakeBackupPrivilege":true,"PseudoOplocks":true}}})", 0);
  EXPECT(R"({"ResourcePath":")" + vsmb + R"(","RequestType":"Add","Settings":{"Name":"s1","Path":"C:\\other"}})", HCS_E_ALREADY_EXISTS_WIN32);
  EXPECT(R"({"ResourcePath":")" + vsmb + R"(","RequestType":"Add","Settings":{"Name":"s9","Path":"C:\\x","Options":{"Bogus":true}}})", HCS_E_INVALID_JSON);
  EXPECT(R"({"ResourcePath":")" + vsmb + R"(","RequestType":"Add","Settings":{"Name":"s9","Path":"C:\\x","Options":{"ReadOnly":1}}})", HCS_E_INVALID_JSON);
  EXPECT(R"({"ResourcePath":")" + vsmb + R"(","RequestType":"Update","Settings":{"Name":"s1","Path":"C:\\layers\\abc"}})", HCS_E_NOT_SUPPORTED_WIN32);
  EXPECT(R"({"ResourcePath":")" + vsmb + R"(","RequestType":"Add","Settings":{"Name":"s2","Path":"C:\\cfg","AllowedFiles":["C:\\cfg\\a.json"],"Options":{"ReadOnly":true,"RestrictFileAccess":true,"SingleFileMapping":true}}})", 0);
  EXPECT(R"({"ResourcePath":")" + vsmb + R"(","RequestType":"Update","Settings":{"Name":"s2","Path":"C:\\cfg","AllowedFiles":["C:\\cfg\\a.json","C:\\cfg\\b.json"],"Options":{"ReadOnly":true,"ShareRead":true,"CacheIo":true,"RestrictFileAccess":true,"PseudoOplocks":true,"SingleFileMapping":true}}})", 0);
  EXPECT(R"({"ResourcePath":")" + vsmb + R"(","RequestType":"Update","Settings":{"Name":"s7","Path":"C:\\cfg"}})", HCS_E_NOT_FOUND);
  Json st = t::simState(s);
  const Json &shares = *st.get("Devices")->get("VirtualSmb")->get("Shares");
  CHECK_EQ(shares.items().size(), static_cast<size_t>(3));  // boot "os" + s1 + s2
  CHECK_EQ(shares.items()[2].get("AllowedFiles")->items().size(), static_cast<size_t>(2));
  // pipes (appendix A7)
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/MappedPipes/\\\\.\\pipe\\docker_engine","RequestType":"Add"})", 0);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/MappedPipes/\\\\.\\pipe\\docker_engine","RequestType":"Add"})", HCS_E_ALREADY_EXISTS_WIN32);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/MappedPipes/p2","RequestType":"Add","Settings":"\\\\.\\pipe\\host"})", 0);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/MappedPipes/p3","RequestType":"Add","Settings":{"a":1}})", HCS_E_INVALID_JSON);
  st = t::simState(s);
  const Json &pipes = *st.get("Devices")->get("MappedPipes");
  CHECK_EQ(pipes.items().size(), static_cast<size_t>(2));
  CHECK_EQ(pipes.items()[0].get("Name")->asString(), std::string("\\\\.\\pipe\\docker_engine"));
  CHECK_EQ(pipes.items()[1].get("HostPath")->asString(), std::string("\\\\.\\pipe\\host"));
  // scratch disk and WCOW mount (appendix A2)
  EXPECT(scsiAdd(1, "C:\\\\c\\\\sandbox.vhdx"), 0);
  EXPECT(guest("Add", "MappedVirtualDisk", R"({"ContainerPath":"c:\\mounts\\scsi\\m0","Lun":1})"), 0);
  EXPECT(guest("Add", "MappedVirtualDisk", R"({"MountPath":"/x","Lun":1})"), HCS_E_INVALID_JSON);  // LCOW form on WCOW
  EXPECT(guest("Add", "MappedVirtualDisk", R"({"ContainerPath":"c:\\mounts\\scsi\\m0","Lun":0})"), HCS_E_ALREADY_EXISTS_WIN32);
  // combined layers (appendix A6, WCOW)
  std::string layer = R"(\\\\?\\VMSMB\\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}\\s1)";
  EXPECT(guest("Add", "CombinedLayers", R"({"ContainerRootPath":"c:\\mounts\\scsi\\m9","Layers":[{"Id":"x","Path":")" + layer + R"("}]})"), HCS_E_NOT_FOUND);
  EXPECT(guest("Add", "CombinedLayers", R"({"ContainerRootPath":"c:\\mounts\\scsi\\m0","Layers":[{"Id":"x","Path":"\\\\?\\VMSMB\\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}\\s8"}]})"), HCS_E_NOT_FOUND);
  EXPECT(guest("Add", "CombinedLayers", R"({"ContainerRootPath":"c:\\mounts\\scsi\\m0","Layers":[{"Id":"x","Path":")" + layer + R"("}]})"), 0);
  EXPECT(guest("Remove", "MappedVirtualDisk", R"({"ContainerPath":"c:\\mounts\\scsi\\m0","Lun":1})"), HCS_E_BUSY_WIN32);
  // WCOW MappedDirectory just records
  EXPECT(guest("Add", "MappedDirectory", R"({"HostPath":")" + layer + R"(","ContainerPath":"c:\\mounts\\d1","ReadOnly":true})"), 0);
  EXPECT(guest("Add", "MappedDirectory", R"({"HostPath":"x","ContainerPath":"c:\\mounts\\d1"})"), HCS_E_ALREADY_EXISTS_WIN32);
  CHECK_EQ(hot(s), 8);
  EXPECT(guest("Remove", "MappedDirectory", R"({"ContainerPath":"c:\\mounts\\d1"})"), 0);
  EXPECT(guest("Remove", "CombinedLayers", R"({"ContainerRootPath":"c:\\mounts\\scsi\\m0"})"), 0);
  EXPECT(guest("Remove", "MappedVirtualDisk", R"({"ContainerPath":"c:\\mounts\\scsi\\m0","Lun":1})"), 0);
  EXPECT(scsiRemove(1), 0);
  EXPECT(R"({"ResourcePath":")" + vsmb + R"(","RequestType":"Remove","Settings":{"Name":"s2"}})", 0);
  EXPECT(R"({"ResourcePath":")" + vsmb + R"(","RequestType":"Remove","Settings":{"Name":"s2"}})", HCS_E_NOT_FOUND);
  EXPECT(R"({"ResourcePath":")" + vsmb + R"(","RequestType":"Remove","Settings":{"Name":"s1"}})", 0);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/MappedPipes/\\\\.\\pipe\\docker_engine","RequestType":"Remove"})", 0);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/MappedPipes/p2","RequestType":"Remove"})", 0);
  EXPECT(R"({"ResourcePath":"VirtualMachine/Devices/MappedPipes/p2","RequestType":"Remove"})", HCS_E_NOT_FOUND);
  // the boot scratch at LUN 0 is present but not hot-added
  CHECK_EQ(hot(s), 0);
  CHECK(t::simState(s).get("Devices")->get("Scsi")->get(t::kCtrl0)->get("Attachments")->get("0") != nullptr);
  HcsCloseComputeSystem(s);
}

TEST(awkward_paths_round_trip) {
  HCS_SYSTEM s = t::createRunning("paths", t::lcowDoc());
  std::u16string path = u"C:\\dir with spaces\\\"quoted\"\\back\\\\slash\\\u00e9\u4e2d\U0001F600\x01\x1f\t\n.vhdx";
  Json settings = Json::object();
  settings.set("Type", Json::string("VirtualDisk"));
  settings.set("Path", Json::string(hcssim::utf16ToUtf8(path)));
  Json doc = Json::object();
  doc.set("ResourcePath", Json::string(kScsi + "5"));
  doc.set("RequestType", Json::string("Add"));
  doc.set("Settings", settings);
  t::Result r = t::modify(s, hcssim::toJson(doc));
  CHECK_HR(r.hr, 0);
  Json st = t::simState(s);
  const Json *p = st.get("Devices")->get("Scsi")->get(t::kCtrl0)->get("Attachments")->get("5")->get("Path");
  CHECK(p && hcssim::utf8ToUtf16(p->asString()) == path);
  // SimulatorState as raw UTF-16 contains the non-BMP character as a surrogate pair
  auto q = t::u16(R"({"PropertyTypes":["SimulatorState"]})");
  t::Result raw = t::run([&](HCS_OPERATION op) { return HcsGetComputeSystemProperties(s, op, q.c_str()); });
  std::u16string wide = hcssim::utf8ToUtf16(raw.doc);
  CHECK(wide.find(u"\U0001F600") != std::u16string::npos);
  CHECK(raw.doc.find("\\\"quoted\\\"") != std::string::npos);
  CHECK(raw.doc.find("\\u0001\\u001f\\t\\n") != std::string::npos);
  HcsCloseComputeSystem(s);
}

TEST(properties_query_validation) {
  HCS_SYSTEM s = t::createRunning("props", t::lcowDoc());
  const char *bad[] = {R"({"PropertyTypes":["Memory"]})", R"({"PropertyTypes":"SimulatorState"})", R"({"Bogus":1})", "[1]", "{x"};
  for (const char *q : bad) {
    auto w = t::u16(q);
    t::Result r = t::run([&](HCS_OPERATION op) { return HcsGetComputeSystemProperties(s, op, w.c_str()); });
    CHECK_HR(r.hr, HCS_E_INVALID_JSON);
  }
  auto empty = t::u16(R"({"PropertyTypes":[]})");
  t::Result r = t::run([&](HCS_OPERATION op) { return HcsGetComputeSystemProperties(s, op, empty.c_str()); });
  CHECK_HR(r.hr, 0);
  CHECK(r.json().get("SimulatorState") == nullptr);
  Json st = t::simState(s);
  for (const char *k : {"Devices", "Guest", "VmAccess", "HotAdded"}) CHECK(st.get(k) != nullptr);
  for (const char *k : {"Scsi", "VirtualSmb", "VirtualPMem", "Plan9", "MappedPipes"}) CHECK(st.get("Devices")->get(k) != nullptr);
  for (const char *k : {"MappedVirtualDisks", "VPMemDevices", "MappedDirectories", "CombinedLayers"})
    CHECK(st.get("Guest")->get(k) != nullptr);
  auto ids = t::u16(R"({"Ids":["nope"]})");
  t::Result e = t::run([&](HCS_OPERATION op) { return HcsEnumerateComputeSystems(ids.c_str(), op); });
  CHECK_EQ(e.json().items().size(), static_cast<size_t>(0));
  auto ids2 = t::u16(R"({"Ids":["props"],"Owners":["test"]})");
  e = t::run([&](HCS_OPERATION op) { return HcsEnumerateComputeSystems(ids2.c_str(), op); });
  CHECK_EQ(e.json().items().size(), static_cast<size_t>(1));
  auto badq = t::u16(R"({"Bogus":[]})");
  e = t::run([&](HCS_OPERATION op) { return HcsEnumerateComputeSystems(badq.c_str(), op); });
  CHECK_HR(e.hr, HCS_E_INVALID_JSON);
  HcsCloseComputeSystem(s);
}
