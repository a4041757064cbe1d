#include "json.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace hcssim {

bool Json::isInteger(double lo, double hi) const {
  return type_ == Type::Number && std::floor(n_) == n_ && n_ >= lo && n_ <= hi;
}

const Json *Json::get(std::string_view key) const {
  if (type_ != Type::Object) return nullptr;
  for (const auto &m : o_)
    if (std::string_view(m.first) == key) return &m.second;
  return nullptr;
}

Json &Json::set(std::string key, Json value) {
  type_ = Type::Object;
  for (auto &m : o_)
    if (m.first == key) {
      m.second = std::move(value);
      return m.second;
    }
  o_.emplace_back(std::move(key), std::move(value));
  return o_.back().second;
}

bool Json::erase(const std::string &key) {
  for (auto it = o_.begin(); it != o_.end(); ++it)
    if (it->first == key) {
      o_.erase(it);
      return true;
    }
  return false;
}

Json &Json::push(Json value) {
  type_ = Type::Array;
  a_.push_back(std::move(value));
  return a_.back();
}

bool Json::operator==(const Json &other) const {
  if (type_ != other.type_) return false;
  switch (type_) {
    case Type::Null: return true;
    case Type::Bool: return b_ == other.b_;
    case Type::Number: return n_ == other.n_;
    case Type::String: return s_ == other.s_;
    case Type::Array: return a_ == other.a_;
    case Type::Object:
      if (o_.size() != other.o_.size()) return false;
      for (const auto &m : o_) {
        const Json *v = other.get(m.first);
        if (!v || !(*v == m.second)) return false;
      }
      return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// UTF conversions

// Writes the (W)UTF-8 encoding of cp (1 to 4 bytes) at out; returns its length.
static size_t encodeUtf8(char *out, uint32_t cp) {
  if (cp < 0x80) {
    out[0] = static_cast<char>(cp);
    return 1;
  }
  if (cp < 0x800) {
    out[0] = static_cast<char>(0xC0 | (cp >> 6));
    out[1] = static_cast<char>(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = static_cast<char>(0xE0 | (cp >> 12));
    out[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out[2] = static_cast<char>(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = static_cast<char>(0xF0 | (cp >> 18));
  out[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
  out[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
  out[3] = static_cast<char>(0x80 | (cp & 0x3F));
  return 4;
}

static void appendUtf8(std::string &out, uint32_t cp) {
  char buf[4];
  out.append(buf, encodeUtf8(buf, cp));
}

static std::string utf16RangeToUtf8(const char16_t *s, size_t n) {
  // ASCII (every document the library sends, nearly) is copied unit by unit into a string of the
  // right size; the first other unit switches to the general encoder for the rest.
  size_t ascii = 0;
  while (ascii < n && s[ascii] < 0x80) ++ascii;
  std::string out(ascii, '\0');
  for (size_t i = 0; i < ascii; ++i) out[i] = static_cast<char>(s[i]);
  if (ascii == n) return out;
  out.reserve(ascii + (n - ascii) * 3);
  for (size_t i = ascii; i < n; ++i) {
    uint32_t c = s[i];
    if (c >= 0xD800 && c <= 0xDBFF && i + 1 < n && s[i + 1] >= 0xDC00 && s[i + 1] <= 0xDFFF) {
      uint32_t lo = s[i + 1];
      appendUtf8(out, 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00));
      ++i;
    } else {
      appendUtf8(out, c);  // lone surrogates become WTF-8
    }
  }
  return out;
}

std::string utf16ToUtf8(const char16_t *s) {
  if (!s) return std::string();
  size_t n = 0;
  while (s[n]) ++n;
  return utf16RangeToUtf8(s, n);
}

std::string utf16ToUtf8(const std::u16string &s) { return utf16RangeToUtf8(s.data(), s.size()); }

// Decodes one (W)UTF-8 sequence at s[i]; returns false if invalid.
static bool decodeUtf8(const char *s, size_t n, size_t &i, uint32_t &cp) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  int len;
  if (c < 0x80) {
    cp = c;
    len = 1;
  } else if ((c & 0xE0) == 0xC0) {
    cp = c & 0x1F;
    len = 2;
  } else if ((c & 0xF0) == 0xE0) {
    cp = c & 0x0F;
    len = 3;
  } else if ((c & 0xF8) == 0xF0) {
    cp = c & 0x07;
    len = 4;
  } else {
    return false;
  }
  if (i + len > n) return false;
  for (int k = 1; k < len; ++k) {
    unsigned char d = static_cast<unsigned char>(s[i + k]);
    if ((d & 0xC0) != 0x80) return false;
    cp = (cp << 6) | (d & 0x3F);
  }
  static const uint32_t minimum[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < minimum[len] || cp > 0x10FFFF) return false;
  i += len;
  return true;
}

std::u16string utf8ToUtf16(const std::string &s) {
  std::u16string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    uint32_t cp;
    if (!decodeUtf8(s.data(), s.size(), i, cp)) {
      out += u'\uFFFD';
      ++i;
      continue;
    }
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out += static_cast<char16_t>(0xD800 + (cp >> 10));
      out += static_cast<char16_t>(0xDC00 + (cp & 0x3FF));
    } else {
      out += static_cast<char16_t>(cp);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Parser

namespace {

// ASCII characters that stand for themselves in a JSON string (not a control character, quote or backslash).
struct PlainTable {
  bool v[128];
  constexpr PlainTable() : v() {
    for (int c = 0x20; c < 128; ++c) v[c] = c != '"' && c != '\\';
  }
};
constexpr PlainTable kPlainTable;
constexpr const bool *kPlain = kPlainTable.v;

// Parses UTF-8 text (C = char) or UTF-16 text whose strings hold only ASCII units (C = char16_t:
// any other unit in a string stops it, see parseJsonAscii16). Offsets in errors are in units of C.
template <typename C>
class Parser {
 public:
  Parser(const C *t, size_t n, std::string &err) : t_(t), n_(n), err_(err) {}

  bool parseDocument(Json &out) {
    skipWs();
    if (!parseValue(out, 0)) return false;
    skipWs();
    if (p_ != n_) return fail("unexpected trailing characters");
    return true;
  }

 private:
  static constexpr bool kWide = sizeof(C) > 1;
  const C *t_;
  size_t n_;
  std::string &err_;
  size_t p_ = 0;

  uint32_t at(size_t i) const { return static_cast<typename std::make_unsigned<C>::type>(t_[i]); }
  bool fail(const char *msg) {
    err_ = std::string(msg) + " at offset " + std::to_string(p_);
    return false;
  }
  bool failAt(size_t p, const char *msg) {
    p_ = p;
    return fail(msg);
  }
  void skipWs() {
    while (p_ < n_ && (t_[p_] == ' ' || t_[p_] == '\t' || t_[p_] == '\n' || t_[p_] == '\r')) ++p_;
  }
  bool literal(const char *word) {
    size_t n = std::strlen(word);
    if (n_ - p_ < n) return fail("invalid literal");
    for (size_t i = 0; i < n; ++i)
      if (at(p_ + i) != static_cast<unsigned char>(word[i])) return fail("invalid literal");
    p_ += n;
    return true;
  }

  // `out` is a fresh (null) value: the value is built in it.
  bool parseValue(Json &out, int depth) {
    if (depth > 512) return fail("nesting too deep");
    if (p_ >= n_) return fail("unexpected end of input");
    uint32_t c = at(p_);
    switch (c) {
      case 'n':
        if (!literal("null")) return false;
        out = Json::null();
        return true;
      case 't':
        if (!literal("true")) return false;
        out = Json::boolean(true);
        return true;
      case 'f':
        if (!literal("false")) return false;
        out = Json::boolean(false);
        return true;
      case '"': return parseString(out.startString());
      case '[': return parseArray(out, depth);
      case '{': return parseObject(out, depth);
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return parseNumber(out);
        return fail("unexpected character");
    }
  }

  bool digit(size_t i) const { return i < n_ && at(i) >= '0' && at(i) <= '9'; }

  bool parseNumber(Json &out) {
    size_t start = p_;
    if (t_[p_] == '-') ++p_;
    if (p_ >= n_) return fail("invalid number");
    if (t_[p_] == '0') {
      ++p_;
    } else if (digit(p_)) {
      while (digit(p_)) ++p_;
    } else {
      return fail("invalid number");
    }
    if (p_ < n_ && t_[p_] == '.') {
      ++p_;
      if (!digit(p_)) return fail("invalid number");
      while (digit(p_)) ++p_;
    }
    if (p_ < n_ && (t_[p_] == 'e' || t_[p_] == 'E')) {
      ++p_;
      if (p_ < n_ && (t_[p_] == '+' || t_[p_] == '-')) ++p_;
      if (!digit(p_)) return fail("invalid number");
      while (digit(p_)) ++p_;
    }
    std::string num(p_ - start, '\0');  // ASCII only: digits, sign, point, exponent
    for (size_t i = start; i < p_; ++i) num[i - start] = static_cast<char>(t_[i]);
    double v = std::strtod(num.c_str(), nullptr);
    if (!std::isfinite(v)) return fail("number out of range");
    out = Json::number(v);
    return true;
  }

  bool hex4(uint32_t &v) {
    if (p_ + 4 > n_) return fail("truncated \\u escape");
    v = 0;
    for (int i = 0; i < 4; ++i) {
      uint32_t c = at(p_ + i);
      v <<= 4;
      if (c >= '0' && c <= '9') v |= c - '0';
      else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
      else return fail("invalid \\u escape");
    }
    p_ += 4;
    return true;
  }

  // One pass: the characters gather in a buffer appended to `s` when full and at the end (one
  // allocation for the strings of HCS documents). The position is kept in a local (stores to the
  // char buffer may alias the members) and written back before anything that reads p_.
  bool parseString(std::string &s) {
    const C *const t = t_;
    const size_t n = n_;
    size_t p = p_ + 1;  // after the opening quote
    char buf[256];
    size_t k = 0;
    while (true) {
      if (p >= n) return failAt(p, "unterminated string");
      uint32_t c = static_cast<typename std::make_unsigned<C>::type>(t[p]);
      if (c == '"') {
        p_ = p + 1;
        s.append(buf, k);
        return true;
      }
      if (k > sizeof buf - 4) {  // room for one more character (4 bytes at most)
        s.append(buf, k);
        k = 0;
      }
      if (c < 0x20) return failAt(p, "control character in string");
      if (c < 0x80 && c != '\\') {
        // A run of plain characters, as far as the buffer has room (most strings in one go).
        const size_t stop = std::min(n, p + (sizeof buf - k));  // k <= sizeof buf - 4 here
#if defined(__SSE2__)
        if (kWide) {
          // UTF-16: 8 units at a time while all are plain (never reading at or past `stop`).
          while (p + 8 <= stop) {
            __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i *>(t + p));
            // Signed compares: a unit >= 0x8000 is negative, so "below 0x20".
            __m128i bad = _mm_or_si128(
                _mm_or_si128(_mm_cmplt_epi16(v, _mm_set1_epi16(0x20)), _mm_cmpgt_epi16(v, _mm_set1_epi16(0x7F))),
                _mm_or_si128(_mm_cmpeq_epi16(v, _mm_set1_epi16('"')), _mm_cmpeq_epi16(v, _mm_set1_epi16('\\'))));
            if (_mm_movemask_epi8(bad)) break;
            _mm_storel_epi64(reinterpret_cast<__m128i *>(buf + k), _mm_packus_epi16(v, v));
            k += 8;
            p += 8;
          }
          if (p == stop) continue;
          c = static_cast<typename std::make_unsigned<C>::type>(t[p]);
          if (c >= 0x80 || !kPlain[c]) continue;  // the next character is not plain: the loop above takes it
        }
#endif
        do {
          buf[k++] = static_cast<char>(c);
          if (++p == stop) break;
          c = static_cast<typename std::make_unsigned<C>::type>(t[p]);
        } while (c < 0x80 && kPlain[c]);
        continue;
      }
      if (c == '\\') {
        ++p;
        if (p >= n) return failAt(p, "unterminated escape");
        uint32_t e = at(p++);
        switch (e) {
          case '"': buf[k++] = '"'; break;
          case '\\': buf[k++] = '\\'; break;
          case '/': buf[k++] = '/'; break;
          case 'b': buf[k++] = '\b'; break;
          case 'f': buf[k++] = '\f'; break;
          case 'n': buf[k++] = '\n'; break;
          case 'r': buf[k++] = '\r'; break;
          case 't': buf[k++] = '\t'; break;
          case 'u': {
            p_ = p;
            uint32_t cp = 0;
            if (!hex4(cp)) return false;
            if (cp >= 0xD800 && cp <= 0xDBFF && p_ + 6 <= n && t[p_] == '\\' && t[p_ + 1] == 'u') {
              size_t save = p_;
              p_ += 2;
              uint32_t lo = 0;
              if (!hex4(lo)) return false;
              if (lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
              } else {
                p_ = save;  // lone high surrogate followed by another escape
              }
            }
            p = p_;
            k += encodeUtf8(buf + k, cp);
            break;
          }
          default: return failAt(p - 1, "invalid escape");
        }
        continue;
      }
      if (kWide) return failAt(p, "non-ASCII character in string");  // parseJsonAscii16: parse the UTF-8 form instead
      size_t i = p;
      uint32_t cp;
      if (!decodeUtf8(reinterpret_cast<const char *>(t), n, i, cp)) return failAt(p, "invalid UTF-8 in string");
      for (; p < i; ++p) buf[k++] = static_cast<char>(t[p]);
    }
  }

  bool parseArray(Json &out, int depth) {
    ++p_;
    std::vector<Json> &items = out.startArray();
    skipWs();
    if (p_ < n_ && t_[p_] == ']') {
      ++p_;
      return true;
    }
    while (true) {
      skipWs();
      items.emplace_back();
      if (!parseValue(items.back(), depth + 1)) return false;  // in place (nested values use their own vectors)
      skipWs();
      if (p_ >= n_) return fail("unterminated array");
      if (t_[p_] == ',') {
        ++p_;
        continue;
      }
      if (t_[p_] == ']') {
        ++p_;
        return true;
      }
      return fail("expected ',' or ']'");
    }
  }

  bool parseObject(Json &out, int depth) {
    ++p_;
    std::vector<Json::Member> &members = out.startObject();
    skipWs();
    if (p_ < n_ && t_[p_] == '}') {
      ++p_;
      return true;
    }
    members.reserve(4);  // one allocation for the small objects of HCS documents
    while (true) {
      skipWs();
      if (p_ >= n_ || t_[p_] != '"') return fail("expected string key");
      std::string key;
      if (!parseString(key)) return false;
      skipWs();
      if (p_ >= n_ || t_[p_] != ':') return fail("expected ':'");
      ++p_;
      skipWs();
      // Duplicate keys: the last one wins, in the first one's place. A new key's value is parsed
      // in place (nested values use their own vectors).
      Json *slot = out.get(key);
      if (slot) {
        Json v;
        if (!parseValue(v, depth + 1)) return false;
        *slot = std::move(v);
      } else {
        members.emplace_back(std::move(key), Json());
        if (!parseValue(members.back().second, depth + 1)) return false;
      }
      skipWs();
      if (p_ >= n_) return fail("unterminated object");
      if (t_[p_] == ',') {
        ++p_;
        continue;
      }
      if (t_[p_] == '}') {
        ++p_;
        return true;
      }
      return fail("expected ',' or '}'");
    }
  }
};

void writeString(std::string &out, const std::string &s) {
  static const char *hex = "0123456789abcdef";
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"') {
      out += "\\\"";
      ++i;
    } else if (c == '\\') {
      out += "\\\\";
      ++i;
    } else if (c < 0x20) {
      switch (c) {
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
      }
      ++i;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
    } else {
      size_t j = i;
      uint32_t cp;
      if (decodeUtf8(s.data(), s.size(), j, cp)) {
        if (cp >= 0xD800 && cp <= 0xDFFF) {  // lone surrogate (WTF-8): escape it
          out += "\\u";
          out += hex[(cp >> 12) & 15];
          out += hex[(cp >> 8) & 15];
          out += hex[(cp >> 4) & 15];
          out += hex[cp & 15];
        } else {
          out.append(s, i, j - i);
        }
        i = j;
      } else {
        out += "\\ufffd";
        ++i;
      }
    }
  }
  out += '"';
}

void writeNumber(std::string &out, double n) {
  char buf[40];
  if (std::floor(n) == n && std::fabs(n) < 9007199254740992.0) {
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
  } else {
    std::snprintf(buf, sizeof buf, "%.15g", n);
    if (std::strtod(buf, nullptr) != n) std::snprintf(buf, sizeof buf, "%.17g", n);
  }
  out += buf;
}

void write(std::string &out, const Json &v) {
  switch (v.type()) {
    case Json::Type::Null: out += "null"; break;
    case Json::Type::Bool: out += v.asBool() ? "true" : "false"; break;
    case Json::Type::Number: writeNumber(out, v.asNumber()); break;
    case Json::Type::String: writeString(out, v.asString()); break;
    case Json::Type::Array: {
      out += '[';
      bool first = true;
      for (const auto &item : v.items()) {
        if (!first) out += ',';
        first = false;
        write(out, item);
      }
      out += ']';
      break;
    }
    case Json::Type::Object: {
      out += '{';
      bool first = true;
      for (const auto &m : v.members()) {
        if (!first) out += ',';
        first = false;
        writeString(out, m.first);
        out += ':';
        write(out, m.second);
      }
      out += '}';
      break;
    }
  }
}

}  // namespace

bool parseJson(const std::string &text, Json &out, std::string &error) {
  Parser<char> p(text.data(), text.size(), error);
  Json tmp;
  if (!p.parseDocument(tmp)) return false;
  out = std::move(tmp);
  return true;
}

bool parseJsonAscii16(const char16_t *text, size_t n, Json &out) {
  std::string error;
  Parser<char16_t> p(text, n, error);
  Json tmp;
  if (!p.parseDocument(tmp)) return false;
  out = std::move(tmp);
  return true;
}

std::string toJson(const Json &value) {
  std::string out;
  write(out, value);
  return out;
}

std::string quoteJson(const std::string &s) {
  std::string out;
  writeString(out, s);
  return out;
}

}  // namespace hcssim
