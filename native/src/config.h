// Simulator controls: latency, concurrency, fault injection, trace and state-file settings, from
// HcsSimConfigure(json) and from environment variables read once at library load.
#ifndef HCSSIM_CONFIG_H
#define HCSSIM_CONFIG_H

#include <functional>
#include <string>

#include "computecore.h"
#include "json.h"

namespace hcssim {

struct FaultHit {
  bool hit = false;
  HRESULT hr = 0;
  std::string message;
  bool guestOnly = false;
  bool hang = false;
  bool crash = false;       // crash the call's system (see events.h) instead of failing the call
  std::string attribution;  // of the crash
  bool hasHr = false;  // a hang fault with an explicit hr fails with it when released
  // bridge faults (fn "bridge:<MessageType>", the fake guest's GCS; gcs.h)
  double delayMs = 0;      // answer after this delay
  bool drop = false;       // close the bridge connection instead of answering
  bool unknownId = false;  // answer with an id the host never used
  bool oversized = false;  // answer with a message above the host's 64 KiB limit
  bool badJson = false;    // answer with a body that is not JSON
};

// Applies a configuration document; returns S_OK, HCS_E_INVALID_JSON (malformed / unknown key /
// wrong type) or HCS_E_INVALIDARG (bad value). Nothing is applied unless everything validates.
HRESULT applyConfig(const std::string &utf8, std::string &error);
// Reads HCSSIM_CONFIG and the shorthand variables (called once at load).
void applyEnvironmentConfig();

// Latency in ms for one call of fn (fixed + uniform jitter).
double pickLatencyMs(const char *fn);
// Latency of the guest's answer to one bridge message ("bridge:<MessageType>"): only an explicit
// per-function entry of the "latency" map applies (the global latencyMs / jitterMs do not).
double pickBridgeLatencyMs(const std::string &fn);
// Counts the call against every matching fault and returns the first that fires.
FaultHit matchFault(const char *fn, const Json *doc);
// The same, asking for the document only when a fault for `fn` matches on its content.
FaultHit matchFault(const char *fn, const std::function<const Json *()> &docOf);

bool isKnownFunction(const std::string &fn);
// "bridge:<MessageType>" of a known GCS bridge request type.
bool isBridgeFunction(const std::string &fn);
// Control "guestRequestWithoutGuestConnection": true = HcsModifyComputeSystem refuses a GuestRequest
// when the VM's create document had no VirtualMachine.GuestConnection.
bool refuseGuestRequestWithoutGuestConnection();

// Removing something that is not attached (control "removeNotAttached"): throws the configured
// failure (HRESULT_FROM_WIN32(ERROR_NOT_FOUND) by default, or HCS_E_INVALID_STATE), or returns
// when the control says "success" (the removal is then a no-op).
void notAttached(const std::string &message);
// While one is alive on the calling thread, notAttached() returns (the removal is a no-op) whatever
// the control says: the Linux GCS's answer to removing a guest mount or SCSI device it does not have
// (its unmount and unplug helpers return success for a missing target, gcs-bridge.md).
class AbsentRemovalSucceeds {
 public:
  AbsentRemovalSucceeds();
  ~AbsentRemovalSucceeds();
  AbsentRemovalSucceeds(const AbsentRemovalSucceeds &) = delete;
  AbsentRemovalSucceeds &operator=(const AbsentRemovalSucceeds &) = delete;

 private:
  bool previous_;
};
// Control "cancel": false (default) = HcsCancelOperation returns E_NOTIMPL, as documented.
bool cancelHonoured();

// Counters of SimulatorState (device inventory) queries: `testHelper` = flagged by a test helper.
void countInventoryQuery(bool testHelper);
// The simulator's counters as a JSON document (HcsSimQuery).
std::string simulatorStatsJson();

}  // namespace hcssim

#endif
