// Build wiring placeholder; replaced by the simulator sources.
#include "computecore.h"
extern "C" HCS_API HLOCAL HCS_CALL LocalFree(HLOCAL memory) { return memory ? nullptr : nullptr; }
