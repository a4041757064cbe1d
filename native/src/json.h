// Minimal JSON value, parser and serializer for the HCS simulator (no third-party deps).
// Strings are UTF-8 internally. Lone UTF-16 surrogates are carried as WTF-8 (3-byte encodings of
// U+D800..U+DFFF) so that every UTF-16 input round-trips exactly.
#ifndef HCSSIM_JSON_H
#define HCSSIM_JSON_H

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hcssim {

class Json {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };
  using Member = std::pair<std::string, Json>;

  Json() = default;
  static Json null() { return Json(); }
  static Json boolean(bool v) { Json j; j.type_ = Type::Bool; j.b_ = v; return j; }
  static Json number(double v) { Json j; j.type_ = Type::Number; j.n_ = v; return j; }
  static Json string(std::string v) { Json j; j.type_ = Type::String; j.s_ = std::move(v); return j; }
  static Json array() { Json j; j.type_ = Type::Array; return j; }
  static Json object() { Json j; j.type_ = Type::Object; return j; }

  Type type() const { return type_; }
  bool isNull() const { return type_ == Type::Null; }
  bool isBool() const { return type_ == Type::Bool; }
  bool isNumber() const { return type_ == Type::Number; }
  bool isString() const { return type_ == Type::String; }
  bool isArray() const { return type_ == Type::Array; }
  bool isObject() const { return type_ == Type::Object; }
  // true when the number is integral and within [lo, hi]
  bool isInteger(double lo, double hi) const;

  bool asBool() const { return b_; }
  double asNumber() const { return n_; }
  int64_t asInt() const { return static_cast<int64_t>(n_); }
  const std::string &asString() const { return s_; }
  const std::vector<Json> &items() const { return a_; }
  std::vector<Json> &items() { return a_; }
  const std::vector<Member> &members() const { return o_; }
  std::vector<Member> &members() { return o_; }

  // For the parser, which builds each value where it stays: makes this (a null value) a string,
  // array or object and returns its storage.
  std::string &startString() { type_ = Type::String; return s_; }
  std::vector<Json> &startArray() { type_ = Type::Array; return a_; }
  std::vector<Member> &startObject() { type_ = Type::Object; return o_; }

  // Object access: nullptr when absent (or when this is not an object). A literal key's length is
  // known where it is written: no std::string made, no strlen.
  const Json *get(std::string_view key) const;
  Json *get(std::string_view key) { return const_cast<Json *>(std::as_const(*this).get(key)); }
  // Sets (replaces in place or appends) a member; this must be an object.
  Json &set(std::string key, Json value);
  bool erase(const std::string &key);
  // Appends to an array.
  Json &push(Json value);

  bool operator==(const Json &other) const;
  bool operator!=(const Json &other) const { return !(*this == other); }

 private:
  Type type_ = Type::Null;
  bool b_ = false;
  double n_ = 0;
  std::string s_;
  std::vector<Json> a_;
  std::vector<Member> o_;
};

// Parses a complete JSON text (RFC 8259; surrounding whitespace allowed). Returns false and sets
// error on malformed input (trailing garbage, bad escapes, control characters in strings, depth > 512).
bool parseJson(const std::string &text, Json &out, std::string &error);
// Parses UTF-16 text directly when every string in it holds ASCII units only (escapes may stand for
// anything): the result is then parseJson's of its UTF-8 form. Returns false when the text is not
// valid JSON or a string holds another unit; parseJson of the UTF-8 form gives the result or error.
bool parseJsonAscii16(const char16_t *text, size_t n, Json &out);
// Compact serialization; non-ASCII is emitted as UTF-8, control characters, quote and backslash are
// escaped, lone surrogates (WTF-8) are emitted as \uXXXX escapes.
std::string toJson(const Json &value);
std::string quoteJson(const std::string &s);

// UTF-16 <-> UTF-8 (WTF-8 for lone surrogates; exact round trip).
std::string utf16ToUtf8(const char16_t *s);
std::string utf16ToUtf8(const std::u16string &s);
std::u16string utf8ToUtf16(const std::string &s);

}  // namespace hcssim

#endif
