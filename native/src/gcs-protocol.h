// The GCS bridge protocol as the simulator's fake guest speaks it (../shared/reference/gcs-bridge.md
// §3–§7): framing (16-byte little-endian header + UTF-8 JSON body), message type names, and the
// request handlers of one guest (NegotiateProtocol v4 with an LCOW or WCOW capability profile,
// ModifySettings on the all-zero container id, WCOW Create/Start of that container, E_NOTIMPL for
// everything else). Pure: no sockets, no threads; the model is reached through a callback.
#ifndef HCSSIM_GCS_PROTOCOL_H
#define HCSSIM_GCS_PROTOCOL_H

#include <cstdint>
#include <functional>
#include <set>
#include <string>

#include "computecore.h"
#include "json.h"

namespace hcssim {
namespace gcs {

constexpr size_t kHeaderSize = 16;
// The host (hcsshim) refuses messages above 64 KiB; the guest enforces no maximum. The fake guest
// refuses (closes the connection on) requests above this bound only to keep its memory bounded.
constexpr uint32_t kHostMaxMessage = 0x10000;
constexpr uint32_t kGuestMaxMessage = 16u << 20;

constexpr uint32_t kKindMask = 0xF0000000u;
constexpr uint32_t kRequest = 0x10000000u;
constexpr uint32_t kResponse = 0x20000000u;
constexpr uint32_t kNotification = 0x30000000u;
constexpr uint32_t kContainerNotification = 0x30100101u;

constexpr uint32_t kCreate = 0x00100101u;
constexpr uint32_t kStart = 0x00100201u;
constexpr uint32_t kModifySettings = 0x00100a01u;
constexpr uint32_t kNegotiateProtocol = 0x00100b01u;

// Guest-side result codes (internal/bridgeutils/gcserr).
constexpr HRESULT kENotImpl = static_cast<HRESULT>(0x80004001u);
constexpr HRESULT kEFail = static_cast<HRESULT>(0x80004005u);
constexpr HRESULT kUnsupportedProtocolVersion = static_cast<HRESULT>(0xC037010Cu);
constexpr HRESULT kInvalidJson = static_cast<HRESULT>(0xC037010Du);
constexpr HRESULT kSystemNotFound = static_cast<HRESULT>(0xC037010Eu);
constexpr HRESULT kSystemAlreadyExists = static_cast<HRESULT>(0xC037010Fu);
constexpr HRESULT kInvalidState = static_cast<HRESULT>(0xC0370105u);

extern const char *const kNullContainerId;   // "00000000-0000-0000-0000-000000000000"
extern const char *const kParentAddress;     // WindowsGcsHvHostID, the WCOW HvSocket ParentAddress
extern const char *const kLcowGcsService;    // 40000000-facb-11e6-bd58-64006a7986d3
extern const char *const kWcowGcsService;    // acef5661-84a1-4e44-856b-6245e69f4620
extern const char *const kLcowEntropyService;
extern const char *const kLcowLogService;

struct Message {
  uint32_t type = 0;
  uint64_t id = 0;
  std::string body;
};

// Header + body.
std::string encode(uint32_t type, uint64_t id, const std::string &body);

// Incremental decoder of one byte stream.
class FrameReader {
 public:
  // Appends bytes; returns false (and sets error) once the stream is broken (size < 16 or above max).
  bool feed(const char *data, size_t n);
  // Pops the next complete message; false when none is complete.
  bool next(Message &out);
  const std::string &error() const { return error_; }
  explicit FrameReader(uint32_t maxMessage = kGuestMaxMessage) : max_(maxMessage) {}

 private:
  std::string buf_;
  size_t pos_ = 0;
  uint32_t max_;
  std::string error_;
};

// "NegotiateProtocol", "ModifySettings", … for a request / response type, or "0x%08x" when unknown.
std::string messageName(uint32_t type);
// The request type of a name ("ModifySettings" → 0x10100a01); 0 when unknown.
uint32_t requestTypeOf(const std::string &name);
inline uint32_t responseTypeOf(uint32_t requestType) { return kResponse | (requestType & ~kKindMask); }

enum class Profile { Lcow, Wcow };

// Applies one UVM-level guest request (RequestType already normalised) to the guest model; throws
// HcsFailure. Provided by the caller (it locks the model).
using ApplyGuest = std::function<void(const Json &request)>;

// The guest's state of one VM (kept across reconnections, as the GCS keeps it), plus the state of
// the current connection (negotiated).
struct Session {
  Profile profile = Profile::Lcow;
  std::string runtimeId;
  bool negotiated = false;  // per connection
  bool created = false;     // WCOW: the null container (the hosting system) was created
  bool started = false;
  bool hvSocketConfigured = false;
  std::set<std::string> namespaces;  // WCOW NetworkNamespace ids added
};

struct Reply {
  uint32_t type = 0;
  std::string body;
  HRESULT hr = 0;
  Json traceDoc;  // the request body as parsed (or its raw text)
};

// Handles one message received by the guest and returns the response to send.
Reply handle(Session &s, const Message &m, const ApplyGuest &apply);

// A response body: {"Result","ActivityId"} plus ErrorMessage / ErrorRecords on failure.
Json responseBody(HRESULT hr, const std::string &activityId, const std::string &message);

// The ResourceType of a ModifySettings body ("" when absent).
std::string resourceTypeOf(const Json &body);

}  // namespace gcs
}  // namespace hcssim

#endif
