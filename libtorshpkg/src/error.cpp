#include "torshpkg/error.h"

#include <cstring>

namespace torshpkg {

namespace {

// Each kind's display name and its stable token, in one table: a kind added to the enum gets
// both here.
struct KindNames {
  ErrorKind kind;
  std::string_view display;
  std::string_view token;
};
constexpr KindNames kKinds[] = {
    {ErrorKind::kCorrupt, "corrupt", "corrupt"},
    {ErrorKind::kBadSignature, "bad signature", "bad_signature"},
    {ErrorKind::kWrongKey, "wrong key", "wrong_key"},
    {ErrorKind::kNotFound, "not found", "not_found"},
    {ErrorKind::kIo, "I/O error", "io"},
    {ErrorKind::kInvalidArgument, "invalid argument", "invalid_argument"},
    {ErrorKind::kUnsupported, "unsupported", "unsupported"},
    {ErrorKind::kInterrupted, "interrupted", "interrupted"},
};

// nullptr for a value that is no enumerator.
const KindNames* names_of(ErrorKind kind) {
  for (const KindNames& k : kKinds) {
    if (k.kind == kind) return &k;
  }
  return nullptr;
}

}  // namespace

std::string_view to_string(ErrorKind kind) {
  const KindNames* k = names_of(kind);
  return k != nullptr ? k->display : "unknown";
}

std::string_view to_token(ErrorKind kind) {
  const KindNames* k = names_of(kind);
  return k != nullptr ? k->token : "io";
}

std::optional<ErrorKind> from_token(std::string_view token) {
  for (const KindNames& k : kKinds) {
    if (k.token == token) return k.kind;
  }
  return std::nullopt;
}

Error corrupt(std::string_view file, std::string_view reason) {
  return Error(ErrorKind::kCorrupt,
               std::string(file) + ": corrupt: " + std::string(reason));
}

Error io_error(std::string_view file, std::string_view what, int errno_value) {
  return Error(ErrorKind::kIo,
               std::string(file) + ": " + std::string(what) + ": " + std::strerror(errno_value));
}

Error invalid_argument(std::string_view reason) {
  return Error(ErrorKind::kInvalidArgument, std::string(reason));
}

Error not_found(std::string_view file, std::string_view what) {
  return Error(ErrorKind::kNotFound, std::string(file) + ": " + std::string(what));
}

Error unsupported(std::string_view file, std::string_view reason) {
  return Error(ErrorKind::kUnsupported, std::string(file) + ": " + std::string(reason));
}

}  // namespace torshpkg
