// JSON parser / serializer and UTF-16 conversion tests.
#include <string>

#include "document.h"
#include "harness.h"
#include "json.h"

using hcssim::Json;

static bool parses(const std::string &s) {
  Json j;
  std::string err;
  return hcssim::parseJson(s, j, err);
}

TEST(json_round_trip_values) {
  const char *docs[] = {"null", "true", "false", "0", "-1", "3.5", "1e+300", "-2143878898", "4294967295",
                        "9007199254740991", "\"\"", "[]", "{}", "[1,[2,[3,{}]]]",
                        "{\"a\":1,\"b\":[true,false,null],\"c\":{\"d\":\"e\"}}"};
  for (const char *d : docs) {
    Json j;
    std::string err;
    CHECK(hcssim::parseJson(d, j, err));
    Json again;
    CHECK(hcssim::parseJson(hcssim::toJson(j), again, err));
    CHECK(j == again);
  }
  Json j;
  std::string err;
  CHECK(hcssim::parseJson("{\"a\":0.1}", j, err));
  CHECK_EQ(hcssim::toJson(j), std::string("{\"a\":0.1}"));
  CHECK(hcssim::parseJson(" \t\r\n{ \"k\" : [ 1 , 2 ] } \n", j, err));
  CHECK_EQ(hcssim::toJson(j), std::string("{\"k\":[1,2]}"));
}

TEST(json_escapes) {
  Json j;
  std::string err;
  CHECK(hcssim::parseJson(R"("\"\\\/\b\f\n\r\t\u0001\u00e9\u20ac\ud83d\ude00")", j, err));
  CHECK_EQ(j.asString(), std::string("\"\\/\b\f\n\r\t\x01\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"));
  CHECK_EQ(hcssim::toJson(j), std::string("\"\\\"\\\\/\\b\\f\\n\\r\\t\\u0001\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\""));
}

TEST(json_rejects_malformed) {
  const char *bad[] = {"", " ", "{", "}", "[1,]", "{\"a\":}", "{\"a\" 1}", "{a:1}", "[1 2]", "01", "1.", ".5", "-",
                       "1e", "+1", "tru", "nul", "\"abc", "\"\\x\"", "\"\\u12G4\"", "\"a\nb\"", "{} {}", "[1]]",
                       "\"\\u12\"", "NaN", "Infinity", "'a'", "{\"a\":1,}", "\x80"};
  for (const char *b : bad) {
    if (parses(b)) t::report(__FILE__, __LINE__, std::string("accepted malformed: ") + b);
  }
  std::string deep(600, '[');
  deep += std::string(600, ']');
  CHECK(!parses(deep));
}

TEST(utf16_round_trip_with_surrogates) {
  std::u16string s = u"C:\\p\"q\\\u00e9\u4e2d\U0001F600\U00010348\x01\t";
  std::string utf8 = hcssim::utf16ToUtf8(s);
  CHECK(hcssim::utf8ToUtf16(utf8) == s);
  // lone surrogates survive (WTF-8 internally, \u escapes in JSON)
  std::u16string lone;
  lone += char16_t(0xD800);
  lone += u'x';
  lone += char16_t(0xDC01);
  std::string l8 = hcssim::utf16ToUtf8(lone);
  CHECK(hcssim::utf8ToUtf16(l8) == lone);
  std::string json = hcssim::toJson(Json::string(l8));
  CHECK_EQ(json, std::string("\"\\ud800x\\udc01\""));
  Json back;
  std::string err;
  CHECK(hcssim::parseJson(json, back, err));
  CHECK(hcssim::utf8ToUtf16(back.asString()) == lone);
  // a full document with awkward strings round-trips through UTF-16
  Json doc = Json::object();
  doc.set("Path", Json::string(utf8));
  std::u16string wire = hcssim::utf8ToUtf16(hcssim::toJson(doc));
  Json parsed;
  CHECK(hcssim::parseJson(hcssim::utf16ToUtf8(wire), parsed, err));
  CHECK(hcssim::utf8ToUtf16(parsed.get("Path")->asString()) == s);
}

TEST(json_ascii_runs_and_duplicate_keys) {
  Json j;
  std::string err;
  // plain runs broken by escapes, non-ASCII and a control character's escape, at every position
  CHECK(hcssim::parseJson("[\"abc\\ndef\",\"\xC3\xA9tag\xE2\x82\xAC end\",\"x\\u0041y\",\"tail\\\\\",\"\"]", j, err));
  CHECK_EQ(j.items().size(), size_t(5));
  CHECK_EQ(j.items()[0].asString(), std::string("abc\ndef"));
  CHECK_EQ(j.items()[1].asString(), std::string("\xC3\xA9tag\xE2\x82\xAC end"));
  CHECK_EQ(j.items()[2].asString(), std::string("xAy"));
  CHECK_EQ(j.items()[3].asString(), std::string("tail\\"));
  CHECK_EQ(j.items()[4].asString(), std::string(""));
  CHECK(!parses("\"abc\x01" "def\""));  // a raw control character after a run is still refused
  CHECK(!parses("\"abcdef"));         // unterminated after a run
  // duplicate keys: the last one wins, in the first one's place
  CHECK(hcssim::parseJson("{\"a\":1,\"b\":2,\"a\":3}", j, err));
  CHECK_EQ(j.members().size(), size_t(2));
  CHECK_EQ(j.members()[0].first, std::string("a"));
  CHECK(j.get("a")->asNumber() == 3);
  CHECK(j.get("b")->asNumber() == 2);
  // UTF-16 -> UTF-8: all ASCII, ASCII then other units, other units first
  CHECK_EQ(hcssim::utf16ToUtf8(std::u16string(u"VirtualMachine/Devices")), std::string("VirtualMachine/Devices"));
  CHECK_EQ(hcssim::utf16ToUtf8(std::u16string(u"ab\u00e9\U0001F600c")), std::string("ab\xC3\xA9\xF0\x9F\x98\x80" "c"));
  CHECK_EQ(hcssim::utf16ToUtf8(std::u16string(u"\u4e2dx")), std::string("\xE4\xB8\xAD" "x"));
  CHECK_EQ(hcssim::utf16ToUtf8(std::u16string()), std::string());
}

TEST(json_utf16_parse_matches_utf8_parse) {
  // parseJsonAscii16 gives parseJson's result for documents whose strings are ASCII (escapes may
  // stand for anything), and refuses the others and malformed ones (Document parses their UTF-8).
  std::string longRun(300, 'x');
  std::string longEscaped;
  for (int i = 0; i < 200; ++i) longEscaped += "a\\\\\\u00e9";  // crosses the parser's buffer
  std::string docs[] = {
      "{\"ResourcePath\":\"VirtualMachine/Devices/Scsi/df6d0690-79e5-55b6-a5ec-c1e2f77f580a/Attachments/1\","
      "\"RequestType\":\"Add\",\"Settings\":{\"Type\":\"VirtualDisk\",\"Path\":\"C:\\\\bench\\\\layer.vhdx\"}}",
      " {\"a\":[1,-2.5e3,true,false,null,{},[],\"\"],\"a\":{\"b\":\"\\u20ac\\ud83d\\ude00\\ud800\\n\"}} ",
      "[\"" + longRun + "\",\"" + longEscaped + "\"]",
      "{\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":{\"x\":[[[]]]}}",
      "\"\"", "0", "[]"};
  for (const std::string &d : docs) {
    std::u16string wide(d.begin(), d.end());
    Json viaUtf8, viaUtf16;
    std::string err;
    CHECK(hcssim::parseJson(d, viaUtf8, err));
    CHECK(hcssim::parseJsonAscii16(wide.data(), wide.size(), viaUtf16));
    CHECK(viaUtf8 == viaUtf16);
    CHECK_EQ(hcssim::toJson(viaUtf8), hcssim::toJson(viaUtf16));
  }
  Json j;
  std::string err;
  // every length around the parser's 256-byte buffer, before an escape and a multi-byte character
  for (size_t len = 248; len <= 262; ++len) {
    std::string run(len, 'r');
    std::string d = "[\"" + run + "\",\"" + run + "\\n\\u20ac" + run + "\"]";
    std::u16string wide(d.begin(), d.end());
    Json viaUtf16;
    CHECK(hcssim::parseJson(d, j, err));
    CHECK(hcssim::parseJsonAscii16(wide.data(), wide.size(), viaUtf16));
    CHECK(j == viaUtf16);
    CHECK_EQ(j.items()[0].asString(), run);
    CHECK_EQ(j.items()[1].asString(), run + "\n\xE2\x82\xAC" + run);
  }
  CHECK(hcssim::parseJson("[\"" + longEscaped + "\"]", j, err));
  CHECK_EQ(j.items()[0].asString().size(), size_t(200 * 4));
  // every kind of character at every position of a run (the UTF-16 parser takes 8 units at a time)
  for (size_t pos = 0; pos < 20; ++pos) {
    for (const char *special : {"\\\"", "\\\\", "\\n", "\x7f", " ", "~", "\\u0080"}) {
      std::string d = "\"" + std::string(pos, 'a') + special + std::string(19 - pos, 'b') + "\"";
      std::u16string wide(d.begin(), d.end());
      Json viaUtf8, viaUtf16;
      CHECK(hcssim::parseJson(d, viaUtf8, err));
      CHECK(hcssim::parseJsonAscii16(wide.data(), wide.size(), viaUtf16));
      CHECK(viaUtf8 == viaUtf16);
    }
    for (char16_t unit : {char16_t(0x01), char16_t(0x80), char16_t(0x100), char16_t(0x7fff), char16_t(0x8000), char16_t(0xffff)}) {
      std::u16string wide = u"\"" + std::u16string(pos, u'a') + unit + std::u16string(19 - pos, u'b') + u"\"";
      CHECK(!hcssim::parseJsonAscii16(wide.data(), wide.size(), j));
    }
  }
  // a non-ASCII unit in a string, malformed documents: refused
  std::u16string nonAscii = u"{\"Path\":\"C:\\\\\u00e9\"}";
  CHECK(!hcssim::parseJsonAscii16(nonAscii.data(), nonAscii.size(), j));
  for (const char16_t *bad : {u"{", u"[1,]", u"\"abc", u"{\"a\":1} x", u"\"\\x\""}) {
    std::u16string b(bad);
    CHECK(!hcssim::parseJsonAscii16(b.data(), b.size(), j));
  }
}

TEST(document_copies_every_length_at_every_alignment) {
  // The caller's text is measured 8 units at a time from a 16-byte boundary: every length, from
  // every start within a block, is copied exactly (the units after the terminator are not).
  alignas(16) char16_t buf[96];
  for (size_t start = 0; start < 8; ++start)
    for (size_t len = 0; len <= 40; ++len) {
      for (auto &c : buf) c = u'z';
      std::string expect;
      buf[start] = u'"';
      for (size_t i = 0; i < len; ++i) {
        buf[start + 1 + i] = static_cast<char16_t>(u'a' + i % 26);
        expect += static_cast<char>('a' + i % 26);
      }
      buf[start + 1 + len] = u'"';
      buf[start + 2 + len] = 0;
      hcssim::Document d(buf + start);
      CHECK(d.valid() != nullptr);
      CHECK_EQ(d.json().asString(), expect);
    }
  hcssim::Document empty(u"");
  CHECK(!empty.present());
  hcssim::Document absent(nullptr);
  CHECK(absent.traced() == nullptr);
}
