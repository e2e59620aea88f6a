// A restricted reader of Python pickles (protocols 0 to 5): it rebuilds the values and
// containers a pickle describes and records every global, call and persistent id as data. It
// never imports or executes anything: a class or function named by the pickle is a Global, and
// calling it (REDUCE, NEWOBJ, INST, OBJ) makes an Object holding the callable and its arguments,
// which later BUILD, SETITEM(S) and APPEND(S) fill in. What the result means is up to the caller
// (see torch_pickle.h).
//
// Malformed input (an unknown or truncated opcode, a stack underflow, a missing memo entry)
// throws Error(kCorrupt) naming the pickle; one past a limit (PickleLimits) Error(kUnsupported)
// naming the limit. Opcodes that need the
// interpreter's registry or out-of-band buffers (EXT1/2/4, NEXT_BUFFER, READONLY_BUFFER) throw
// Error(kUnsupported).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace torshpkg::convert {

struct PickleValue;
// Values point at each other (and may form cycles, as a pickle's memo allows); they all live
// in the Pickle that read them.
using PickleRef = PickleValue*;

struct PickleValue {
  enum class Kind {
    kNone,
    kBool,
    kInt,     // fits int64: `integer`
    kBigInt,  // does not: `text` holds its little-endian two's complement bytes
    kFloat,
    kStr,           // `text`, UTF-8
    kBytes,         // `text`, raw bytes (also Python 2 strings)
    kTuple,         // `items`
    kList,          // `items`
    kSet,           // `items` (set and frozenset)
    kDict,          // `entries`
    kGlobal,        // `module`, `text` (the qualified name)
    kObject,        // `callable`, `args`; `state` after BUILD; `items`/`entries` when appended to
    kPersistentId,  // `args`: the id value
  };
  Kind kind = Kind::kNone;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0;
  std::string text;
  std::string module;
  std::vector<PickleRef> items;
  std::vector<std::pair<PickleRef, PickleRef>> entries;
  PickleRef callable;
  PickleRef args;
  PickleRef state;

  bool is_global(std::string_view mod, std::string_view name) const {
    return kind == Kind::kGlobal && module == mod && text == name;
  }
  // An Object whose callable is the global mod.name.
  bool is_call_of(std::string_view mod, std::string_view name) const {
    return kind == Kind::kObject && callable && callable->is_global(mod, name);
  }
};

// What one pickle may make the reader hold, whatever its size: reaching a limit throws
// Error(kUnsupported) naming it. A value costs about 200 bytes, so a few kilobytes of deflated
// pickle could otherwise ask for gigabytes.
struct PickleLimits {
  size_t max_values = 5'000'000;  // values created, in all
  size_t max_stack = 1'000'000;   // stack depth plus marks
  size_t max_memo = 1'000'000;
  uint64_t max_bytes = 256ull << 20;  // the memory values, their text and their items take
};

// The values of one pickle; `root` is what it describes.
struct Pickle {
  std::vector<std::unique_ptr<PickleValue>> values;
  PickleRef root = nullptr;
};

// Reads one pickle (up to its STOP opcode). `name` names it in errors.
Pickle read_pickle(std::span<const uint8_t> bytes, std::string_view name,
                   const PickleLimits& limits = {});

}  // namespace torshpkg::convert
