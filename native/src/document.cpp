#include "document.h"

namespace hcssim {

Document::Document(const char16_t *text) : given_(text != nullptr) {
  if (text) text_ = text;
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
