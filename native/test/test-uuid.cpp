// SHA-1, version-5 UUID / NameToGuid vectors, and the UUID text forms parseUuid and canonicalGuid accept.
#include <cstring>

#include "harness.h"
#include "uuid.h"

TEST(sha1_vectors) {
  CHECK_EQ(hcssim::sha1Hex(""), std::string("da39a3ee5e6b4b0d3255bfef95601890afd80709"));
  CHECK_EQ(hcssim::sha1Hex("abc"), std::string("a9993e364706816aba3e25717850c26c9cd0d89d"));
  CHECK_EQ(hcssim::sha1Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
           std::string("84983e441c3bd26ebaae4aa1f95129e5e54670f1"));
  CHECK_EQ(hcssim::sha1Hex(std::string(1000000, 'a')), std::string("34aa973cd4c4daa4f61eeb2bdbad27316534016f"));
}

TEST(uuid_v5_vectors) {
  hcssim::UuidBytes dns;
  CHECK(hcssim::parseUuid("6ba7b810-9dad-11d1-80b4-00c04fd430c8", dns));
  CHECK_EQ(hcssim::formatUuid(hcssim::uuidV5(dns, "www.example.com")), std::string("2ed6657d-e927-568b-95e1-2665a8aea6a2"));
  // hcsshim's SCSI controller GUIDs: v5 of "0".."3" in namespace d422512d-2bf2-4752-809d-7b82b5fcb1b4
  hcssim::UuidBytes ns;
  CHECK(hcssim::parseUuid("d422512d-2bf2-4752-809d-7b82b5fcb1b4", ns));
  CHECK_EQ(hcssim::formatUuid(hcssim::uuidV5(ns, "0")), std::string("df6d0690-79e5-55b6-a5ec-c1e2f77f580a"));
  CHECK_EQ(hcssim::formatUuid(hcssim::uuidV5(ns, "3")), std::string("305891a9-b251-5dfe-91a2-c25d9212275b"));
}

// canonicalGuid and parseUuid against literal values (not against each other).
TEST(uuid_text_forms) {
  struct Accepted {
    const char *text, *canonical;
  };
  const Accepted accepted[] = {
      {"df6d0690-79e5-55b6-a5ec-c1e2f77f580a", "df6d0690-79e5-55b6-a5ec-c1e2f77f580a"},
      {"DF6D0690-79E5-55B6-A5EC-C1E2F77F580A", "df6d0690-79e5-55b6-a5ec-c1e2f77f580a"},
      {"{DF6D0690-79E5-55B6-A5EC-C1E2F77F580A}", "df6d0690-79e5-55b6-a5ec-c1e2f77f580a"},
      {"{0110f83b-DE10-5172-a266-78bca56bf50a}", "0110f83b-de10-5172-a266-78bca56bf50a"},
      {"AbCdEf01-2345-6789-aBcD-eF0123456789", "abcdef01-2345-6789-abcd-ef0123456789"},
      {"00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000000"},
      {"{FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF}", "ffffffff-ffff-ffff-ffff-ffffffffffff"},
      {"90000000-0000-0000-0000-00000000000a", "90000000-0000-0000-0000-00000000000a"},
  };
  for (const auto &a : accepted) {
    CHECK_EQ(hcssim::canonicalGuid(a.text), std::string(a.canonical));
    hcssim::UuidBytes u;
    CHECK(hcssim::parseUuid(a.text, u));
  }
  const std::string_view rejected[] = {
      "",
      "df6d0690-79e5-55b6-a5ec-c1e2f77f580",          // 35 characters
      "0110f83b-de10-5172-a266-78bca56bf50a0",        // 37
      "{0110f83b-de10-5172-a266-78bca56bf50a",        // an opening brace only
      "0110f83b-de10-5172-a266-78bca56bf50a}",        // a closing brace only
      "x0110f83b-de10-5172-a266-78bca56bf50ax",       // 38 characters, not in braces
      "(0110f83b-de10-5172-a266-78bca56bf50a)",       // other brackets
      "{{0110f83b-de10-5172-a266-78bca56bf50a}}",     // braces twice
      "df6d0690x79e5-55b6-a5ec-c1e2f77f580a",         // no hyphen at 8
      "0110f83bde10-5172-a266-78bca56bf50a-",         // hyphens moved
      "0110f83b-de10-5172-a266-78bca56bf5-0",         // a hyphen in place of a digit
      "{0110f83b-de10-5172-a266-78bca56bf5-0}",       // the same in braces
      "0110f83b-de10-5172-a266-78bca56bf5g0",         // g
      "0110f83b-de10-5172-a266-78bca56bf5G0",         // G
      "0110f83b-de10-5172-a266-78bca56bf5@0",         // the character before A
      "0110f83b-de10-5172-a266-78bca56bf5`0",         // the character before a
      "0110f83b-de10-5172-a266-78bca56bf5/0",         // the character before 0
      "0110f83b-de10-5172-a266-78bca56bf5:0",         // the character after 9
      "0110f83b-de10-5172-a266-78bca56bf50 ",         // a trailing space in place of a digit
      std::string_view("0110f83b-de10-5172-a266-78bca56bf5\0a", 36),  // a NUL in place of a digit
  };
  for (std::string_view r : rejected) {
    CHECK_EQ(hcssim::canonicalGuid(r), std::string());
    hcssim::UuidBytes u;
    CHECK(!hcssim::parseUuid(r, u));
  }
  // the bytes, big-endian, in the order written
  hcssim::UuidBytes u{};
  CHECK(hcssim::parseUuid("{DF6D0690-79E5-55b6-a5ec-C1E2F77F580A}", u));
  const hcssim::UuidBytes bytes = {0xdf, 0x6d, 0x06, 0x90, 0x79, 0xe5, 0x55, 0xb6,
                                   0xa5, 0xec, 0xc1, 0xe2, 0xf7, 0x7f, 0x58, 0x0a};
  CHECK(u == bytes);
  CHECK_EQ(hcssim::formatUuid(bytes), std::string("df6d0690-79e5-55b6-a5ec-c1e2f77f580a"));
}

TEST(name_to_guid) {
  GUID g;
  std::memset(&g, 0, sizeof g);
  auto name = t::u16("www.example.com");
  CHECK_HR(NameToGuid(name.c_str(), &g), 0);
  CHECK_EQ(g.Data1, 0x2ed6657du);
  CHECK_EQ(g.Data2, static_cast<uint16_t>(0xe927));
  CHECK_EQ(g.Data3, static_cast<uint16_t>(0x568b));
  const uint8_t d4[8] = {0x95, 0xe1, 0x26, 0x65, 0xa8, 0xae, 0xa6, 0xa2};
  CHECK(std::memcmp(g.Data4, d4, 8) == 0);
  CHECK_HR(NameToGuid(nullptr, &g), HCS_E_INVALIDARG);
  CHECK_HR(NameToGuid(name.c_str(), nullptr), HCS_E_POINTER);
}
