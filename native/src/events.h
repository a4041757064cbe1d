// System events (HcsSetComputeSystemCallback): which handle listens to which compute system, and
// the delivery of an event. As on Windows, events arrive on a thread of the simulator (never the
// caller's), with no simulator lock held; HcsCloseComputeSystem stops a handle's events (an
// event already being delivered may still arrive) and delivers no event itself.
#ifndef HCSSIM_EVENTS_H
#define HCSSIM_EVENTS_H

#include <cstdint>
#include <string>

#include "computecore.h"
#include "core.h"

namespace hcssim {

// Registers (or, with a null callback, removes) the event callback of one system handle.
void setEventSink(uintptr_t handle, const SystemRecPtr &rec, HCS_EVENT_CALLBACK callback, const void *context);
void removeEventSink(uintptr_t handle);

// Delivers one event with its JSON document to every handle of `rec` that has a callback: on the
// calling thread when `here` (a worker applying an operation: the event then reaches the client
// before that operation's completion, while the client still waits for it), else on a new thread
// (a control called on the client's own thread, which must not wait for itself). Call with no
// simulator lock held.
void raiseSystemEvent(const SystemRecPtr &rec, uint32_t type, const std::string &json, bool here);

// The SystemExited document (SystemExitStatus): {"Status","ExitType","Attribution":[record]}.
std::string systemExitDocument(HRESULT status, const std::string &exitType, const std::string &attributionRecord);

// SystemExited for a terminate ("ForcedExit", Client) or a shutdown ("GracefulExit", Client) that
// stopped `rec`; called by the worker applying it (delivered on that thread).
void raiseClientExit(const SystemRecPtr &rec, bool terminate);

// The "crash the VM" control: stops the running system `id` behind everybody's back and raises
// SystemExited with ExitType "UnexpectedExit" and Status 0x80370106. `attribution` is one of
// UnexpectedExit (default), GuestCrash, TripleFault, WorkerExit. Returns false (with `error`) when
// there is no such running system or the attribution is unknown. `here` as for raiseSystemEvent.
// Call with no simulator lock held.
bool crashSystem(const std::string &id, const std::string &attribution, std::string &error, bool here);
bool isKnownCrashAttribution(const std::string &attribution);

}  // namespace hcssim

#endif
