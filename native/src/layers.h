// The simulator's host layer model (include/hostlayers.h): activated and prepared layers, their
// mount paths, and bind-filter mappings. Guarded by the core model mutex; persisted beside the
// state file (`<stateFile>.hostlayers`) so that a new process sees the host as the last one left it.
#ifndef HCSSIM_LAYERS_H
#define HCSSIM_LAYERS_H

namespace hcssim {

// With the model mutex held: forgets every layer and mapping (simulator reset).
void dropHostLayersLocked();

}  // namespace hcssim

#endif
