// torshpkg keygen and sign: Ed25519 keys and package signatures.
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "commands.h"
#include "torshpkg/keys.h"
#include "torshpkg/signature.h"

namespace torshpkg::cli {

Action add_keygen_command(CLI::App& app) {
  struct Args {
    std::string prefix;
    bool force = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "keygen", "Make an Ed25519 key pair: PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub");
  sub->add_option("PREFIX", a->prefix, "Path prefix of the two files")->required();
  sub->add_flag("-f,--force", a->force, "Replace existing files");
  return [a] {
    const std::string key_id = generate_key_files(a->prefix, a->force);
    std::cout << "key id " << key_id << "\n"
              << "private key " << a->prefix << ".key (keep it secret)\n"
              << "public key  " << a->prefix << ".pub (copy it into trusted-keys folders)\n";
    return kExitOk;
  };
}

Action add_sign_command(CLI::App& app) {
  struct Args {
    std::string pkg;
    std::string key;
    std::string journal;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "sign", "Sign a package with an Ed25519 key (other keys' signatures are kept)");
  sub->add_option("PKG", a->pkg, "Package file, rewritten atomically")->required();
  sub->add_option("--key", a->key, "Private key (PKCS#8 PEM, e.g. from keygen or openssl genpkey)")
      ->required();
  sub->add_option("--journal", a->journal,
                  "Lineage journal to record the signature in (default as for create)");
  return [a] {
    const PrivateKey key = PrivateKey::load(a->key);
    sign_package(a->pkg, key);
    record_lineage_event(a->journal, "signed", a->pkg, {{"signer", key.public_key().key_id()}});
    std::cout << "signed " << a->pkg << " with key " << key.public_key().key_id() << "\n";
    return kExitOk;
  };
}

}  // namespace torshpkg::cli
