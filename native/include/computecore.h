/*
 * The subset of the Host Compute Service API (computecore.dll, kernel32.dll, vmcompute.dll) that
 * uvm-orchestrator calls, declared with the ABI it has on Windows x64, written so the same header
 * also describes the native HCS simulator (build/native/libhcssim.so) on Linux.
 *
 * ABI notes for non-Windows hosts: WCHAR is 16-bit (char16_t), HRESULT is int32_t, DWORD is
 * uint32_t, handles are pointers. Result documents (PWSTR*) are allocated by the library and must
 * be released by the caller with LocalFree.
 */
#ifndef UVM_ORCHESTRATOR_COMPUTECORE_H
#define UVM_ORCHESTRATOR_COMPUTECORE_H

#include <stdint.h>

#ifdef _WIN32
#define HCS_API __declspec(dllimport)
#define HCS_CALL __stdcall
#else
#define HCS_API __attribute__((visibility("default")))
#define HCS_CALL
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef char16_t WCHAR;
typedef const WCHAR *PCWSTR;
typedef WCHAR *PWSTR;
typedef int32_t HRESULT;
typedef uint32_t DWORD;
typedef void *HANDLE;
typedef void *HLOCAL;

typedef struct HCS_OPERATION_ *HCS_OPERATION;
typedef struct HCS_SYSTEM_ *HCS_SYSTEM;

typedef struct GUID {
  uint32_t Data1;
  uint16_t Data2;
  uint16_t Data3;
  uint8_t Data4[8];
} GUID;

typedef enum HCS_EVENT_TYPE {
  HcsEventInvalid = 0x00000000,
  HcsEventSystemExited = 0x00000001,
  HcsEventSystemCrashInitiated = 0x00000002,
  HcsEventSystemCrashReport = 0x00000003,
  HcsEventServiceDisconnect = 0x02000000,
  HcsEventOperationCallback = 0x01000000
} HCS_EVENT_TYPE;

typedef enum HCS_EVENT_OPTIONS {
  HcsEventOptionNone = 0x00000000,
  HcsEventOptionEnableOperationCallbacks = 0x00000001,
  HcsEventOptionEnableLiveMigrationEvents = 0x00000004
} HCS_EVENT_OPTIONS;

typedef struct HCS_EVENT {
  uint32_t Type; /* HCS_EVENT_TYPE */
  PCWSTR EventData;
  HCS_OPERATION Operation;
} HCS_EVENT;

typedef void(HCS_CALL *HCS_OPERATION_COMPLETION)(HCS_OPERATION operation, void *context);
typedef void(HCS_CALL *HCS_EVENT_CALLBACK)(HCS_EVENT *event, void *context);

/* Operations */
HCS_API HCS_OPERATION HCS_CALL HcsCreateOperation(const void *context, HCS_OPERATION_COMPLETION callback);
HCS_API void HCS_CALL HcsCloseOperation(HCS_OPERATION operation);
HCS_API HRESULT HCS_CALL HcsGetOperationResult(HCS_OPERATION operation, PWSTR *resultDocument);
HCS_API HRESULT HCS_CALL HcsWaitForOperationResult(HCS_OPERATION operation, DWORD timeoutMs, PWSTR *resultDocument);
HCS_API HRESULT HCS_CALL HcsSetOperationCallback(HCS_OPERATION operation, const void *context, HCS_OPERATION_COMPLETION callback);
HCS_API HRESULT HCS_CALL HcsCancelOperation(HCS_OPERATION operation);

/* Compute systems */
HCS_API HRESULT HCS_CALL HcsCreateComputeSystem(PCWSTR id, PCWSTR configuration, HCS_OPERATION operation,
                                                const void *securityDescriptor, HCS_SYSTEM *computeSystem);
HCS_API HRESULT HCS_CALL HcsOpenComputeSystem(PCWSTR id, DWORD requestedAccess, HCS_SYSTEM *computeSystem);
HCS_API void HCS_CALL HcsCloseComputeSystem(HCS_SYSTEM computeSystem);
HCS_API HRESULT HCS_CALL HcsStartComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options);
HCS_API HRESULT HCS_CALL HcsShutDownComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options);
HCS_API HRESULT HCS_CALL HcsTerminateComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options);
HCS_API HRESULT HCS_CALL HcsGetComputeSystemProperties(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR propertyQuery);
HCS_API HRESULT HCS_CALL HcsModifyComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR configuration,
                                                HANDLE identity);
HCS_API HRESULT HCS_CALL HcsSetComputeSystemCallback(HCS_SYSTEM computeSystem, uint32_t callbackOptions, const void *context,
                                                     HCS_EVENT_CALLBACK callback);
HCS_API HRESULT HCS_CALL HcsEnumerateComputeSystems(PCWSTR query, HCS_OPERATION operation);

/* VM access to host files */
HCS_API HRESULT HCS_CALL HcsGrantVmAccess(PCWSTR vmId, PCWSTR filePath);
HCS_API HRESULT HCS_CALL HcsRevokeVmAccess(PCWSTR vmId, PCWSTR filePath);

/* kernel32.dll on Windows */
HCS_API HLOCAL HCS_CALL LocalFree(HLOCAL memory);

/* vmcompute.dll on Windows: deterministic GUID of a name (the simulator: RFC 4122 version-5 UUID of
 * the UTF-8 name in namespace 6ba7b810-9dad-11d1-80b4-00c04fd430c8). */
HCS_API HRESULT HCS_CALL NameToGuid(PCWSTR name, GUID *guid);

/* Simulator only: configure latency, concurrency, fault injection and tracing from a JSON document
 * (see docs/hcs.md). Not exported by any Windows DLL. */
HCS_API HRESULT HCS_CALL HcsSimConfigure(PCWSTR json);
// Simulator only: the simulator's counters as a JSON document (free it with LocalFree).
HCS_API HRESULT HCS_CALL HcsSimQuery(PWSTR *result);

#define HCS_GENERIC_ALL 0x10000000u
#define HCS_INFINITE 0xFFFFFFFFu

/* HRESULTs */
#define HCS_S_OK ((HRESULT)0)
#define HCS_E_INVALIDARG ((HRESULT)0x80070057)
#define HCS_E_POINTER ((HRESULT)0x80004003)
#define HCS_E_OUTOFMEMORY ((HRESULT)0x8007000E)
#define HCS_E_HANDLE ((HRESULT)0x80070006)
#define HCS_E_NOT_FOUND ((HRESULT)0x80070490)
#define HCS_E_ACCESS_DENIED_WIN32 ((HRESULT)0x80070005)
#define HCS_E_TERMINATED_DURING_START ((HRESULT)0x80370100)
#define HCS_E_INVALID_STATE ((HRESULT)0x80370105)
#define HCS_E_TERMINATED ((HRESULT)0x80370107)
#define HCS_E_CONNECTION_TIMEOUT ((HRESULT)0x80370109)
#define HCS_E_INVALID_JSON ((HRESULT)0x8037010D)
#define HCS_E_SYSTEM_NOT_FOUND ((HRESULT)0x8037010E)
#define HCS_E_SYSTEM_ALREADY_EXISTS ((HRESULT)0x8037010F)
#define HCS_E_SYSTEM_ALREADY_STOPPED ((HRESULT)0x80370110)
#define HCS_E_OPERATION_NOT_STARTED ((HRESULT)0x80370115)
#define HCS_E_OPERATION_ALREADY_STARTED ((HRESULT)0x80370116)
#define HCS_E_OPERATION_PENDING ((HRESULT)0x80370117)
#define HCS_E_OPERATION_TIMEOUT ((HRESULT)0x80370118)
#define HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET ((HRESULT)0x80370119)
#define HCS_E_ACCESS_DENIED ((HRESULT)0x8037011B)
#define HCS_E_GUEST_CRITICAL_ERROR ((HRESULT)0x8037011C)
#define HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION ((HRESULT)0x80370120)
#define E_ABORT_HR ((HRESULT)0x80004004)
/* Additional HRESULTs used by the simulator */
#define HCS_E_FAIL ((HRESULT)0x80004005)
#define HCS_E_NOTIMPL ((HRESULT)0x80004001)
#define HCS_E_NOT_SUPPORTED_WIN32 ((HRESULT)0x80070032)
#define HCS_E_BUSY_WIN32 ((HRESULT)0x800700AA)
#define HCS_E_ALREADY_EXISTS_WIN32 ((HRESULT)0x800700B7)

#ifdef __cplusplus
}
#endif

#endif
