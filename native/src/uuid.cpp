#include "uuid.h"

#include <cstring>
#include <mutex>
#include <random>
#include <vector>

namespace hcssim {

namespace {
inline uint32_t rol(uint32_t v, int n) { return (v << n) | (v >> (32 - n)); }
const char kHex[] = "0123456789abcdef";
}  // namespace

std::array<uint8_t, 20> sha1(const void *data, size_t size) {
  uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
  std::vector<uint8_t> msg(static_cast<const uint8_t *>(data), static_cast<const uint8_t *>(data) + size);
  uint64_t bitLen = static_cast<uint64_t>(size) * 8;
  msg.push_back(0x80);
  while (msg.size() % 64 != 56) msg.push_back(0);
  for (int i = 7; i >= 0; --i) msg.push_back(static_cast<uint8_t>(bitLen >> (i * 8)));
  for (size_t off = 0; off < msg.size(); off += 64) {
    uint32_t w[80];
    for (int i = 0; i < 16; ++i)
      w[i] = (uint32_t(msg[off + 4 * i]) << 24) | (uint32_t(msg[off + 4 * i + 1]) << 16) |
             (uint32_t(msg[off + 4 * i + 2]) << 8) | uint32_t(msg[off + 4 * i + 3]);
    for (int i = 16; i < 80; ++i) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; ++i) {
      uint32_t f, k;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5A827999u;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ED9EBA1u;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8F1BBCDCu;
      } else {
        f = b ^ c ^ d;
        k = 0xCA62C1D6u;
      }
      uint32_t t = rol(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = rol(b, 30);
      b = a;
      a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
  }
  std::array<uint8_t, 20> out{};
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 4; ++j) out[4 * i + j] = static_cast<uint8_t>(h[i] >> (24 - 8 * j));
  return out;
}

std::string sha1Hex(const std::string &data) {
  auto d = sha1(data.data(), data.size());
  std::string s;
  for (uint8_t b : d) {
    s += kHex[b >> 4];
    s += kHex[b & 15];
  }
  return s;
}

namespace {
int hexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
// Where each byte's two digits start in the 36-character form; hyphens at 8, 13, 18 and 23.
const uint8_t kDigitPairs[16] = {0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34};

// The 36-character form inside `text` (its braces skipped) if it has the length and the hyphens
// of one, else null; its digits are left to the caller (kDigitPairs).
const char *uuidForm(std::string_view text) {
  const char *s = text.data();  // no copy: the braces are skipped
  if (text.size() == 38 && text.front() == '{' && text.back() == '}') ++s;
  else if (text.size() != 36) return nullptr;
  if (s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-') return nullptr;
  return s;
}
}  // namespace

bool parseUuid(std::string_view textIn, UuidBytes &out) {
  const char *text = uuidForm(textIn);
  if (!text) return false;
  for (int b = 0; b < 16; ++b) {
    int hi = hexDigit(text[kDigitPairs[b]]), lo = hexDigit(text[kDigitPairs[b] + 1]);
    if (hi < 0 || lo < 0) return false;
    out[b] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

std::string formatUuid(const UuidBytes &u) {
  char s[36];
  s[8] = s[13] = s[18] = s[23] = '-';
  for (int b = 0; b < 16; ++b) {
    s[kDigitPairs[b]] = kHex[u[b] >> 4];
    s[kDigitPairs[b] + 1] = kHex[u[b] & 15];
  }
  return std::string(s, sizeof s);
}

UuidBytes uuidV5(const UuidBytes &ns, const std::string &name) {
  std::string buf(reinterpret_cast<const char *>(ns.data()), 16);
  buf += name;
  auto d = sha1(buf.data(), buf.size());
  UuidBytes u{};
  std::memcpy(u.data(), d.data(), 16);
  u[6] = static_cast<uint8_t>((u[6] & 0x0F) | 0x50);
  u[8] = static_cast<uint8_t>((u[8] & 0x3F) | 0x80);
  return u;
}

std::string randomUuid() {
  static std::mutex *mu = new std::mutex();
  static std::mt19937_64 *rng = nullptr;
  std::lock_guard<std::mutex> lock(*mu);
  if (!rng) {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    rng = new std::mt19937_64(seq);
  }
  UuidBytes u{};
  for (int i = 0; i < 16; i += 8) {
    uint64_t r = (*rng)();
    for (int k = 0; k < 8; ++k) u[i + k] = static_cast<uint8_t>(r >> (8 * k));
  }
  u[6] = static_cast<uint8_t>((u[6] & 0x0F) | 0x40);
  u[8] = static_cast<uint8_t>((u[8] & 0x3F) | 0x80);
  return formatUuid(u);
}

GUID uuidToGuid(const UuidBytes &u) {
  GUID g;
  g.Data1 = (uint32_t(u[0]) << 24) | (uint32_t(u[1]) << 16) | (uint32_t(u[2]) << 8) | uint32_t(u[3]);
  g.Data2 = static_cast<uint16_t>((u[4] << 8) | u[5]);
  g.Data3 = static_cast<uint16_t>((u[6] << 8) | u[7]);
  for (int i = 0; i < 8; ++i) g.Data4[i] = u[8 + i];
  return g;
}

std::string canonicalGuid(std::string_view textIn) {
  // parseUuid then formatUuid, in one pass: the digits checked and lowercased where they are.
  const char *text = uuidForm(textIn);
  if (!text) return std::string();
  char out[36];
  out[8] = out[13] = out[18] = out[23] = '-';
  for (uint8_t at : kDigitPairs)
    for (int i = at; i < at + 2; ++i) {
      char c = text[i];
      if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
      else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return std::string();
      out[i] = c;
    }
  return std::string(out, sizeof out);
}

}  // namespace hcssim
