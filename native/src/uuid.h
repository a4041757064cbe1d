// SHA-1 (FIPS 180-4) and RFC 4122 name-based (version 5) UUIDs.
#ifndef HCSSIM_UUID_H
#define HCSSIM_UUID_H

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "computecore.h"

namespace hcssim {

std::array<uint8_t, 20> sha1(const void *data, size_t size);
std::string sha1Hex(const std::string &data);

using UuidBytes = std::array<uint8_t, 16>;
// Parses "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (optionally in braces, any case).
bool parseUuid(std::string_view text, UuidBytes &out);
std::string formatUuid(const UuidBytes &u);  // lowercase canonical form
UuidBytes uuidV5(const UuidBytes &ns, const std::string &nameUtf8);
// A fresh random (version 4) UUID, lowercase canonical form.
std::string randomUuid();
// Windows GUID fields from the big-endian UUID bytes.
GUID uuidToGuid(const UuidBytes &u);
// Lowercase canonical form of a GUID string, or "" if it is not one.
std::string canonicalGuid(std::string_view text);

}  // namespace hcssim

#endif
