// The simulated compute-system model: host device tree, guest model, validation of the create
// document and of ModifySettingRequest documents, and the SimulatorState / persistence forms.
// Not thread-safe by itself: callers hold the simulator's model mutex.
#ifndef HCSSIM_MODEL_H
#define HCSSIM_MODEL_H

#include <cstdint>
#include <map>
#include <string>
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
  std::vector<HostEntry> vsmbShares;
  bool hasPlan9 = false;
  std::vector<HostEntry> plan9Shares;
  std::vector<std::pair<std::string, Json>> mappedPipes;  // pipe name -> settings (null or host path)
  std::map<std::string, VpciDevice> vpci;  // VMBus GUID (lowercase) -> assigned device (vpci.h)
  // guest model: settings as added, in add order
  std::vector<Json> mappedVirtualDisks;
  std::vector<Json> vpmemGuest;
  std::vector<Json> mappedDirectories;
  std::vector<Json> combinedLayers;
};

// Validates a create document and fills a new System (state Created). Throws HcsFailure.
void buildSystemFromCreateDoc(const std::string &id, const Json &doc, System &out);

// Applies a ModifySettingRequest: validates the shape of both halves first (HCS_E_INVALID_JSON,
// nothing applied), then applies the host half (if ResourcePath is present), then the guest half (if
// GuestRequest is present). If guestFault is non-null the guest half fails with it after the host
// half was applied. A failing guest half leaves the host half applied. Throws HcsFailure.
void applyModify(System &sys, const Json &doc, const HcsFailure *guestFault);
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
