#include "materialize.h"

#include <algorithm>
#include <optional>

#include "torshpkg/error.h"

namespace torshpkg::convert {
namespace {

constexpr size_t kPiece = 4u << 20;

bool mul(uint64_t a, uint64_t b, uint64_t& out) {
  return !__builtin_mul_overflow(a, b, &out);
}
bool add(uint64_t a, uint64_t b, uint64_t& out) {
  return !__builtin_add_overflow(a, b, &out);
}

void swap_elements(std::span<uint8_t> bytes, unsigned unit) {
  for (size_t at = 0; at + unit <= bytes.size(); at += unit) {
    std::reverse(bytes.begin() + static_cast<ptrdiff_t>(at),
                 bytes.begin() + static_cast<ptrdiff_t>(at + unit));
  }
}

}  // namespace

std::optional<uint64_t> element_count(std::span<const uint64_t> shape) {
  uint64_t n = 1;
  for (const uint64_t d : shape) {
    if (!mul(n, d, n)) return std::nullopt;
  }
  return n;
}

bool is_row_major(const StridedView& v) {
  uint64_t expected = 1;
  for (size_t i = v.shape.size(); i-- > 0;) {
    if (v.shape[i] != 1 && v.stride[i] != expected) return false;
    expected *= v.shape[i];
  }
  return true;
}

void check_view(const StridedView& v, const std::string& what) {
  if (v.shape.size() != v.stride.size()) throw corrupt(what, "size and stride differ in rank");
  const auto n = element_count(v.shape);
  uint64_t bytes = 0;
  if (!n || !mul(*n, v.element_size, bytes)) throw corrupt(what, "tensor size overflows");
  uint64_t storage_bytes = 0;
  if (!mul(v.storage_elements, v.element_size, storage_bytes)) {
    throw corrupt(what, "storage size overflows");
  }
  if (*n == 0) return;
  uint64_t last = v.offset;
  for (size_t i = 0; i < v.shape.size(); ++i) {
    uint64_t step = 0;
    if (!mul(v.shape[i] - 1, v.stride[i], step) || !add(last, step, last)) {
      throw corrupt(what, "view extent overflows");
    }
  }
  if (last >= v.storage_elements) {
    throw corrupt(what, "view reaches element " + std::to_string(last) + " of a storage of " +
                            std::to_string(v.storage_elements));
  }
}

void stream_view(const StridedView& v, const RangeReader& read, const ByteSink& sink,
                 const std::string& what) {
  check_view(v, what);
  const uint64_t n = *element_count(v.shape);
  if (n == 0) return;
  const unsigned es = v.element_size;
  const unsigned unit = v.swap_unit ? v.swap_unit : es;
  std::vector<uint8_t> buf;
  if (is_row_major(v)) {
    const uint64_t total = n * es;
    const size_t piece = kPiece / es * es;
    buf.resize(static_cast<size_t>(std::min<uint64_t>(piece, total)));
    for (uint64_t done = 0; done < total;) {
      const size_t len = static_cast<size_t>(std::min<uint64_t>(piece, total - done));
      read(v.offset * es + done, std::span(buf.data(), len));
      if (v.byte_swap) swap_elements(std::span(buf.data(), len), unit);
      sink(std::span<const uint8_t>(buf.data(), len));
      done += len;
    }
    return;
  }
  // Any other view: read the span it covers, then gather element runs in row-major order.
  uint64_t lo = v.offset, hi = v.offset;
  for (size_t i = 0; i < v.shape.size(); ++i) hi += (v.shape[i] - 1) * v.stride[i];
  std::vector<uint8_t> span(static_cast<size_t>((hi - lo + 1) * es));
  read(lo * es, span);
  const size_t rank = v.shape.size();
  // The innermost dimension is copied as one run when its elements are adjacent.
  const bool inner_run = rank > 0 && v.stride[rank - 1] == 1;
  const uint64_t run = inner_run ? v.shape[rank - 1] : 1;
  const size_t outer = inner_run ? rank - 1 : rank;
  std::vector<uint64_t> index(outer, 0);
  buf.reserve(kPiece + run * es);
  for (uint64_t emitted = 0; emitted < n; emitted += run) {
    uint64_t at = v.offset - lo;
    for (size_t i = 0; i < outer; ++i) at += index[i] * v.stride[i];
    const uint8_t* src = span.data() + at * es;
    buf.insert(buf.end(), src, src + run * es);
    if (buf.size() >= kPiece) {
      if (v.byte_swap) swap_elements(buf, unit);
      sink(buf);
      buf.clear();
    }
    for (size_t i = outer; i-- > 0;) {
      if (++index[i] < v.shape[i]) break;
      index[i] = 0;
    }
  }
  if (!buf.empty()) {
    if (v.byte_swap) swap_elements(buf, unit);
    sink(buf);
  }
}

}  // namespace torshpkg::convert
