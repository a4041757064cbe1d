// The simulator's VirtualPci model (assigned devices, hcs-real-world.md §4): host devices keyed by
// their VMBus GUID, one assignment per (device instance path, virtual function) on the whole host,
// the LCOW guest's VPCIDevice Add (removal is host-only), boot devices from the create document.
// Called by model.cpp with the model mutex held.
#ifndef HCSSIM_VPCI_H
#define HCSSIM_VPCI_H

#include <cstdint>
#include <map>
#include <string>

#include "json.h"

namespace hcssim {

struct System;

struct VpciDevice {
  Json settings;            // VirtualPciDevice as added
  bool boot = false;        // from the create document
  bool guestAdded = false;  // guest VPCIDevice Add seen (LCOW)
};

// Shape of a VirtualPciDevice (HCS_E_INVALID_JSON on wrong types / unknown fields).
void validateVpciDevice(const Json &settings, const std::string &what);
// Shape of the guest VPCIDevice settings.
void validateVpciGuest(const System &sys, const Json &settings, const std::string &what);
// Host Add / Remove of VirtualMachine/Devices/VirtualPci/<guid>.
void applyVpciHost(System &sys, const std::string &guid, bool add, const Json *settings);
// Guest VPCIDevice request (LCOW): Add needs the host device; Remove is refused like the GCS does.
void applyVpciGuest(System &sys, bool add, const Json &settings);
// Devices.VirtualPci of a create document (boot devices).
void vpciFromCreateDoc(System &sys, const Json &section, const std::string &what);
int64_t vpciHotAddedCount(const System &sys);
// {"<guid>": {"Settings": ..., "Guest": bool}} for SimulatorState.Devices.VirtualPci.
Json vpciState(const System &sys);
Json vpciToPersist(const System &sys);
// Tolerates an absent section (state files written before the model existed).
void vpciFromPersist(const Json *section, System &sys);

}  // namespace hcssim

#endif
