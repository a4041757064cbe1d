// The simulator's fake guest: after a VM starts, it dials the library's hvsocket listeners, which
// off Windows are Unix sockets `<dir>/<RuntimeId>-<ServiceId>.sock` (dir = the control `hvsockDir`,
// else $UVM_HVSOCK_DIR, else $TMPDIR/uvm-hvsock, else /tmp/uvm-hvsock), retrying every 100 ms until
// connected or the VM stops. LCOW: entropy (read until EOF), then log (a few JSON lines, kept open),
// then the GCS bridge unless the create document had GuestConnection; WCOW: the GCS bridge unless
// GuestConnection. The bridge speaks gcs-protocol.h and applies guest requests to the VM's guest
// model (the one HcsModifyComputeSystem's GuestRequest uses). A dropped bridge is redialled.
//
// One guest I/O thread (poll-based, started on first use, never joined) serves every VM; all
// sockets are opened, used and closed on that thread only. The functions below only queue work for
// it and may be called with the model mutex held (the guest's own mutex is a leaf lock).
#ifndef HCSSIM_GCS_H
#define HCSSIM_GCS_H

#include <string>

#include "core.h"
#include "json.h"

namespace hcssim {

// A VM started (or, `redial`, a running VM was loaded from a state file: only the bridge redials).
void gcsVmStarted(const SystemRecPtr &rec, bool redial = false);
// Something stopped or dropped systems: the guest closes the connections of VMs no longer running.
void gcsPoke();
// Control "reset": forget every guest (connections closed) and restore the guest controls' defaults.
void gcsReset();
// Control "releaseHangs": answer every bridge request parked by a hang fault now.
void gcsReleaseHangs();
// Control "guestDial": false = no guest dials (for accept-deadline tests).
void gcsSetDial(bool enabled);
// Control "hvsockDir": overrides the environment ("" = use the environment).
void gcsSetDir(const std::string &dir);
// Control "guestNotify": sends an unsolicited ContainerNotification on the system's bridge.
// Returns false (with error) when that bridge is not connected.
bool gcsNotify(const std::string &systemId, const Json &body, std::string &error);
// Counters for HcsSimQuery: {"Vms","Dialing","Bridges","Dials","Messages"}, as of a round of the
// guest thread that began after the call (which closes the guests of stopped systems).
Json gcsStats();

}  // namespace hcssim

#endif
