// A JSON document argument of an HCS call (create configuration, modify request, property or
// enumeration query, start/shutdown/terminate options).
//
// HCS copies what it needs before a call returns (the caller may free its buffer then), so a call
// copies the caller's UTF-16 text on the caller's thread — a copy and nothing more. The text is
// parsed once, when first needed (straight from UTF-16 when its strings are ASCII, else from its
// UTF-8 form: parseJsonAscii16): normally by the worker that applies the operation,
// so the caller's thread (for the binding, the JS main thread) does not parse. Only when an
// injected fault must look at the document at call time (fault counting is at call time) or the
// call fails before it starts is it parsed on the caller's thread.
//
// One thread uses a Document at a time: the caller until the operation is started, then the
// worker (handed over through the scheduler's and the pool's locks), which drops the parsed form
// once the operation is complete. The text is freed with the operation, normally by the client's
// HcsCloseOperation on the thread that copied it (scheduler.cpp, complete()).
#ifndef HCSSIM_DOCUMENT_H
#define HCSSIM_DOCUMENT_H

#include <memory>
#include <string>

#include "json.h"

namespace hcssim {

class Document {
 public:
  // A copy of `text` (NULL: an absent document).
  explicit Document(const char16_t *text);
  // Neither NULL nor blank.
  bool present();
  // Present and not valid JSON.
  bool malformed();
  // The parsed document; a JSON string holding the raw text when it is malformed (as traced).
  const Json &json();
  const std::string &error();
  // The document as traced: nullptr when absent (a malformed one as its raw text).
  const Json *traced();
  // The document as faults match it: nullptr when absent or malformed.
  const Json *valid();
  // Frees the parsed form (on the thread that parsed it) once nothing reads the document any more;
  // the text stays until the document is destroyed (on the thread that copied it, normally).
  void dropParsed();

 private:
  void parse();
  bool given_;
  std::u16string text_;
  bool parsed_ = false;
  bool present_ = false;
  bool ok_ = true;
  Json json_;
  std::string error_;
};

using DocumentPtr = std::shared_ptr<Document>;

}  // namespace hcssim

#endif
