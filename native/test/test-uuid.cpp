// SHA-1 and version-5 UUID / NameToGuid vectors.
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
  CHECK_EQ(hcssim::canonicalGuid("{DF6D0690-79E5-55B6-A5EC-C1E2F77F580A}"), std::string("df6d0690-79e5-55b6-a5ec-c1e2f77f580a"));
  CHECK_EQ(hcssim::canonicalGuid("df6d0690-79e5-55b6-a5ec-c1e2f77f580"), std::string());
  CHECK_EQ(hcssim::canonicalGuid("df6d0690x79e5-55b6-a5ec-c1e2f77f580a"), std::string());
  // canonicalGuid is formatUuid(parseUuid()) (or "" when that fails), in one pass
  for (const char *g : {"df6d0690-79e5-55b6-a5ec-c1e2f77f580a", "DF6D0690-79E5-55B6-A5EC-C1E2F77F580A",
                        "{0110f83b-DE10-5172-a266-78bca56bf50a}", "{0110f83b-de10-5172-a266-78bca56bf50a",
                        "0110f83b-de10-5172-a266-78bca56bf50a}", "x0110f83b-de10-5172-a266-78bca56bf50ax",
                        "0110f83b-de10-5172-a266-78bca56bf5g0", "0110f83b-de10-5172-a266-78bca56bf5-0",
                        "0110f83bde10-5172-a266-78bca56bf50a-", "0110f83b-de10-5172-a266-78bca56bf50a0", ""}) {
    hcssim::UuidBytes u;
    std::string expect = hcssim::parseUuid(g, u) ? hcssim::formatUuid(u) : std::string();
    CHECK_EQ(hcssim::canonicalGuid(g), expect);
  }
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
