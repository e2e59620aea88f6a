#include "torshpkg/error.h"

#include <cstring>

namespace torshpkg {

std::string_view to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kCorrupt:
      return "corrupt";
    case ErrorKind::kBadSignature:
      return "bad signature";
    case ErrorKind::kWrongKey:
      return "wrong key";
    case ErrorKind::kNotFound:
      return "not found";
    case ErrorKind::kIo:
      return "I/O error";
    case ErrorKind::kInvalidArgument:
      return "invalid argument";
    case ErrorKind::kUnsupported:
      return "unsupported";
    case ErrorKind::kInterrupted:
      return "interrupted";
  }
  return "unknown";
}

namespace {

constexpr ErrorKind kKinds[] = {ErrorKind::kCorrupt,     ErrorKind::kBadSignature,
                                ErrorKind::kWrongKey,    ErrorKind::kNotFound,
                                ErrorKind::kIo,          ErrorKind::kInvalidArgument,
                                ErrorKind::kUnsupported, ErrorKind::kInterrupted};

}  // namespace

std::string_view to_token(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kCorrupt:
      return "corrupt";
    case ErrorKind::kBadSignature:
      return "bad_signature";
    case ErrorKind::kWrongKey:
      return "wrong_key";
    case ErrorKind::kNotFound:
      return "not_found";
    case ErrorKind::kIo:
      return "io";
    case ErrorKind::kInvalidArgument:
      return "invalid_argument";
    case ErrorKind::kUnsupported:
      return "unsupported";
    case ErrorKind::kInterrupted:
      return "interrupted";
  }
  return "io";
}

std::optional<ErrorKind> from_token(std::string_view token) {
  for (const ErrorKind k : kKinds) {
    if (to_token(k) == token) return k;
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
