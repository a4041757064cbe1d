#include "document.h"

#include <cstdint>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace hcssim {

namespace {

// The length of a NUL-terminated UTF-16 string, 8 units at a time. The 16-byte loads are aligned,
// so they never reach into another page; like strlen they may read past the terminator within the
// last block (hence no AddressSanitizer checks in here).
__attribute__((no_sanitize_address)) size_t length16(const char16_t *s) {
#if defined(__SSE2__)
  if (reinterpret_cast<uintptr_t>(s) % 2 == 0) {
    const char16_t *p = s;
    for (; reinterpret_cast<uintptr_t>(p) % 16 != 0; ++p)
      if (!*p) return static_cast<size_t>(p - s);
    const __m128i zero = _mm_setzero_si128();
    for (;; p += 8) {
      int mask = _mm_movemask_epi8(_mm_cmpeq_epi16(_mm_load_si128(reinterpret_cast<const __m128i *>(p)), zero));
      if (mask) return static_cast<size_t>(p - s) + static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(mask))) / 2;
    }
  }
#endif
  size_t n = 0;
  while (s[n]) ++n;
  return n;
}

}  // namespace

Document::Document(const char16_t *text) : given_(text != nullptr) {
  if (text) text_.assign(text, length16(text));
}

void Document::parse() {
  if (parsed_) return;
  parsed_ = true;
  if (!given_) return;
  bool blank = true;
  for (char16_t c : text_)
    if (c != u' ' && c != u'\t' && c != u'\n' && c != u'\r') {
      blank = false;
      break;
    }
  if (blank) return;
  present_ = true;
  // Documents whose strings are ASCII (nearly all) are parsed as they are; any other, and any
  // malformed one (for the error, and the raw text traced in its place), from their UTF-8 form.
  if (parseJsonAscii16(text_.data(), text_.size(), json_)) return;
  std::string text = utf16ToUtf8(text_);
  ok_ = parseJson(text, json_, error_);
  if (!ok_) json_ = Json::string(std::move(text));  // traced as the raw text
}

void Document::dropParsed() {
  json_ = Json();
  error_ = std::string();
}

bool Document::present() {
  parse();
  return present_;
}

bool Document::malformed() {
  parse();
  return present_ && !ok_;
}

const Json &Document::json() {
  parse();
  return json_;
}

const std::string &Document::error() {
  parse();
  return error_;
}

const Json *Document::traced() {
  parse();
  return present_ ? &json_ : nullptr;
}

const Json *Document::valid() {
  parse();
  return present_ && ok_ ? &json_ : nullptr;
}

}  // namespace hcssim
