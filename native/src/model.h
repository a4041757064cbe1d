// The simulated compute-system model: host device tree, guest model, validation of the create
// document and of ModifySettingRequest documents, and the SimulatorState / persistence forms.
// Not thread-safe by itself: callers hold the simulator's model mutex.
#ifndef HCSSIM_MODEL_H
#define HCSSIM_MODEL_H

#include <cstdint>
#include <list>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "computecore.h"
#include "json.h"
#include "vpci.h"

namespace hcssim {

// Thrown by validation / apply code; becomes the operation's HRESULT and error document.
struct HcsFailure {
  HRESULT hr;
  std::string message;
};
[[noreturn]] void fail(HRESULT hr, const std::string &message);
[[noreturn]] void invalidJson(const std::string &message);

struct HostEntry {
  Json settings;
  bool boot = false;  // present since create (not hot-added)
};

struct ScsiAttachment {
  Json settings;
  bool boot = false;
  bool unplugged = false;  // guest SCSIDevice Remove seen; cleared by the host Remove
};

struct ScsiController {
  std::string guid;  // lowercase canonical
  std::map<int, ScsiAttachment> luns;
};

struct VpmemDevice {
  bool present = false;  // added explicitly (create doc or Devices/<n> Add)
  bool boot = false;
  Json settings;
  std::map<uint64_t, Json> mappings;  // offset -> VirtualPMemMapping settings (always hot-added)
};

// A table in add order with a unique key per entry: find, append and erase by key in O(1) whatever
// the table's size (a UVM may hold thousands of shares or mappings), iteration in add order (the
// order SimulatorState and the state file show). Entries live in list nodes, so the index's
// iterators stay valid across inserts, erases and moves; a copy rebuilds the index.
template <typename V>
class KeyedList {
 public:
  KeyedList() = default;
  KeyedList(KeyedList &&) = default;
  KeyedList &operator=(KeyedList &&) = default;
  KeyedList(const KeyedList &o) { *this = o; }
  KeyedList &operator=(const KeyedList &o) {
    if (this == &o) return *this;
    clear();
    for (const auto &e : o.items_) insert(e.first, e.second);
    return *this;
  }

  const V *find(const std::string &key) const {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &it->second->second;
  }
  V *find(const std::string &key) {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &it->second->second;
  }
  bool contains(const std::string &key) const { return index_.count(key) != 0; }
  // Appends; false (nothing changed) when the key is present.
  bool insert(const std::string &key, V value) {
    if (index_.count(key)) return false;
    items_.emplace_back(key, std::move(value));
    index_.emplace(key, std::prev(items_.end()));
    return true;
  }
  // Removes the entry of `key` into `*out` (when non-null); false when there is none.
  bool erase(const std::string &key, V *out = nullptr) {
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    if (out) *out = std::move(it->second->second);
    items_.erase(it->second);
    index_.erase(it);
    return true;
  }
  void clear() {
    index_.clear();
    items_.clear();
  }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }

  // Iteration in add order over (key, value) pairs.
  using Items = std::list<std::pair<std::string, V>>;
  typename Items::const_iterator begin() const { return items_.begin(); }
  typename Items::const_iterator end() const { return items_.end(); }

 private:
  Items items_;
  std::unordered_map<std::string, typename Items::iterator> index_;
};

enum class GuestOs { Unknown, Linux, Windows };

struct System {
  std::string id;
  std::string state;  // Created | Running | Stopped
  std::string owner;
  bool hasOwner = false;
  GuestOs os = GuestOs::Unknown;
  std::string runtimeId;         // fresh GUID per create (property "RuntimeId"; the hvsocket VmId)
  bool guestConnection = false;  // the create document has VirtualMachine.GuestConnection (HCS owns the GCS)
  std::vector<ScsiController> scsi;  // in create-document order
  bool hasVpmem = false;
  int64_t vpmemMaxCount = 0;
  int64_t vpmemMaxSizeBytes = 0;
  std::map<int64_t, VpmemDevice> vpmem;
  bool hasVsmb = false;
  KeyedList<HostEntry> vsmbShares;   // by Name
  bool hasPlan9 = false;
  KeyedList<HostEntry> plan9Shares;  // by Name
  KeyedList<Json> mappedPipes;       // pipe name -> settings (null or host path)
  std::map<std::string, VpciDevice> vpci;  // VMBus GUID (lowercase) -> assigned device (vpci.h)
  // guest model: settings as added, in add order, by guest path (unique across the three mount
  // tables) resp. by ContainerRootPath
  KeyedList<Json> mappedVirtualDisks;  // by MountPath (LCOW) or ContainerPath (WCOW)
  KeyedList<Json> vpmemGuest;          // by MountPath
  KeyedList<Json> mappedDirectories;   // by MountPath (LCOW) or ContainerPath (WCOW)
  KeyedList<Json> combinedLayers;      // by ContainerRootPath
  // Derived indexes of the guest tables (kept in step by model.cpp's insert/erase helpers):
  std::unordered_map<std::string, std::string> plan9MountOf;  // Plan9 share name -> its LCOW MountPath
  std::map<std::pair<int64_t, int64_t>, int> lcowDiskMounts;   // (Controller, Lun) -> LCOW mounts of it
  std::map<std::string, int> combinedPaths;  // root, scratch and layer paths of combined layers -> uses
};

// Validates a create document and fills a new System (state Created). Throws HcsFailure.
void buildSystemFromCreateDoc(const std::string &id, const Json &doc, System &out);

// The target of a host ResourcePath.
enum class HostKind { Scsi, Vsmb, VpmemDevice, VpmemMapping, Plan9, Pipe, Vpci };
struct HostTarget {
  HostKind kind = HostKind::Scsi;
  std::string guid;
  int64_t lun = 0;
  int64_t device = 0;
  int64_t offset = 0;
  std::string pipe;
};

// A ModifySettingRequest is applied in two steps: checkModifyShape (on the document alone, so a
// caller can run it outside the model lock), then applyModifyShape. Together they validate the
// shape of both halves first (HCS_E_INVALID_JSON, nothing applied), then apply the host half (if
// ResourcePath is present), then the guest half (if GuestRequest is present). If guestFault is
// non-null the guest half fails with it after the host half was applied. A failing guest half
// leaves the host half applied. Both throw HcsFailure.
//
// What of a request can be checked on the document alone (no System): its fields, and the host
// half's ResourcePath, RequestType and Settings shape. Points into the document.
struct ModifyShape {
  bool host = false;
  const Json *guestRequest = nullptr;  // null: none
  HostTarget target;
  std::string requestType;
  const Json *settings = nullptr;  // host half's Settings, null: none
};
// Throws HcsFailure (HCS_E_INVALID_JSON / HCS_E_INVALIDARG) before anything looks at the System.
void checkModifyShape(const Json &doc, ModifyShape &out);
// The rest on a checked shape: the guest half's shape (it depends on the System), then the host
// half, then the guest half.
void applyModifyShape(System &sys, const ModifyShape &shape, const HcsFailure *guestFault);
bool hasGuestPart(const Json &doc);
// Applies one guest request {RequestType, ResourceType, Settings} alone (the bridge's ModifySettings),
// validated like a GuestRequest and applied atomically or not at all. Throws HcsFailure.
void applyGuestOnly(System &sys, const Json &guestRequest);

// Number of host and guest resources added after create that are still present.
int64_t hotAddedCount(const System &sys);
// {"Devices": ..., "Guest": ...} (VmAccess / HotAdded added by the caller).
Json simulatorStateDevicesAndGuest(const System &sys);

// Persistence form (complete: includes boot flags and internal state).
Json systemToPersist(const System &sys);
bool systemFromPersist(const Json &j, System &out, std::string &error);

// VSMB guest path prefix of a share name.
extern const char *const kVsmbGuestPrefix;

}  // namespace hcssim

#endif
