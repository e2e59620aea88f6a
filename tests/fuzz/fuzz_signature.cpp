// libFuzzer target: signature entries (DSSE-style envelopes) and PEM key parsing.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "torshpkg/error.h"
#include "torshpkg/keys.h"
#include "torshpkg/signature.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const torshpkg::Signature s = torshpkg::parse_signature_entry(text, "fuzz", "entry");
    // What parses must serialize back to a form that parses to the same signature.
    const torshpkg::Signature again =
        torshpkg::parse_signature_entry(torshpkg::serialize_signature_entry(s), "fuzz", "again");
    if (again.key_id != s.key_id || again.sig != s.sig) __builtin_trap();
  } catch (const torshpkg::Error&) {
  }
  try {
    torshpkg::PublicKey::from_pem(std::string(text), "fuzz.pub");
  } catch (const torshpkg::Error&) {
  }
  try {
    torshpkg::PrivateKey::from_pem(std::string(text), "fuzz.key");
  } catch (const torshpkg::Error&) {
  }
  return 0;
}
