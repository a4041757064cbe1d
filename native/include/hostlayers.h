/*
 * The host layer API (vmcompute.dll, undocumented; declarations as hcsshim's internal/wclayer)
 * and the bind filter (bindfltapi.dll) that uvm-orchestrator calls to mount a process-isolated
 * container's layers on the host, with their Windows x64 ABI. The native simulator
 * (build/native/libhcssim.so) exports the same functions on other hosts (native/src/layers.cpp).
 * Every function returns an HRESULT; strings are NUL-terminated UTF-16.
 */
#ifndef UVM_ORCHESTRATOR_HOSTLAYERS_H
#define UVM_ORCHESTRATOR_HOSTLAYERS_H

#include <stddef.h>

#include "computecore.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef uint32_t ULONG;
typedef size_t SIZE_T;

/* Flavour: 0 = DiffDriver, 1 = FilterDriver (what hcsshim passes, with HomeDir ""). */
typedef struct DriverInfo {
  int32_t Flavour;
  PCWSTR HomeDir;
} DriverInfo;

/* One parent layer: immediate parent first, base last. Flags: bit 31 = dirty, else 0. */
typedef struct WC_LAYER_DESCRIPTOR {
  GUID LayerId;
  ULONG Flags;
  PCWSTR Path;
} WC_LAYER_DESCRIPTOR;

HCS_API HRESULT HCS_CALL ActivateLayer(const DriverInfo *info, PCWSTR id);
HCS_API HRESULT HCS_CALL DeactivateLayer(const DriverInfo *info, PCWSTR id);
HCS_API HRESULT HCS_CALL PrepareLayer(const DriverInfo *info, PCWSTR id, const WC_LAYER_DESCRIPTOR *layers, ULONG count);
HCS_API HRESULT HCS_CALL UnprepareLayer(const DriverInfo *info, PCWSTR id);
/* Two calls: buffer NULL sets *length (characters, NUL included); then a buffer of *length characters. */
HCS_API HRESULT HCS_CALL GetLayerMountPath(const DriverInfo *info, PCWSTR id, SIZE_T *length, PWSTR buffer);

#define BINDFLT_FLAG_READ_ONLY_MAPPING 0x00000001u
#define BINDFLT_FLAG_NO_MULTIPLE_TARGETS 0x00000040u
#define BINDFLT_FLAG_USE_CURRENT_SILO_MAPPING 0x00000200u

/* job NULL = a global mapping of virtualizationRootPath onto virtualizationTargetPath. */
HCS_API HRESULT HCS_CALL BfSetupFilter(HANDLE jobHandle, ULONG flags, PCWSTR virtualizationRootPath, PCWSTR virtualizationTargetPath,
                                       const PCWSTR *virtualizationExceptionPaths, ULONG virtualizationExceptionPathCount);
HCS_API HRESULT HCS_CALL BfRemoveMapping(HANDLE jobHandle, PCWSTR virtualizationRootPath);

/* Simulator only: {"Layers":[{"Path","Activated","Prepared","ReadWrite","Parents","MountPath"}],"Bindings":[{"Root","Target","Flags"}]}; LocalFree it. */
HCS_API HRESULT HCS_CALL HcsSimHostLayers(PWSTR *state);

#ifdef __cplusplus
}
#endif

#endif
