#include "materialize.h"

#include <algorithm>
#include <cstring>
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

namespace {

// Emits `bytes` in pieces of at most kPiece, swapping elements first when stored big-endian.
void emit(const StridedView& v, std::span<uint8_t> bytes, const ByteSink& sink) {
  if (v.byte_swap) swap_elements(bytes, v.swap_unit ? v.swap_unit : v.element_size);
  for (size_t at = 0; at < bytes.size(); at += kPiece) {
    sink(bytes.subspan(at, std::min(kPiece, bytes.size() - at)));
  }
}

// A row-major view: its storage front to back.
void stream_rows(const StridedView& v, uint64_t n, const RangeReader& read, const ByteSink& sink) {
  const unsigned es = v.element_size;
  const uint64_t total = n * es;
  const size_t piece = kPiece / es * es;
  std::vector<uint8_t> buf(static_cast<size_t>(std::min<uint64_t>(piece, total)));
  for (uint64_t done = 0; done < total;) {
    const size_t len = static_cast<size_t>(std::min<uint64_t>(piece, total - done));
    read(v.offset * es + done, std::span(buf.data(), len));
    emit(v, std::span(buf.data(), len), sink);
    done += len;
  }
}

// A view over a small span: read the span once, gather element runs in row-major order.
void gather_span(const StridedView& v, uint64_t n, uint64_t lo, uint64_t hi,
                 const RangeReader& read, const ByteSink& sink) {
  const unsigned es = v.element_size;
  std::vector<uint8_t> span(static_cast<size_t>((hi - lo + 1) * es));
  read(lo * es, span);
  const size_t rank = v.shape.size();
  // The innermost dimension is copied as one run when its elements are adjacent.
  const bool inner_run = rank > 0 && v.stride[rank - 1] == 1;
  const uint64_t run = inner_run ? v.shape[rank - 1] : 1;
  const size_t outer = inner_run ? rank - 1 : rank;
  std::vector<uint64_t> index(outer, 0);
  std::vector<uint8_t> buf;
  buf.reserve(kPiece + run * es);
  for (uint64_t emitted = 0; emitted < n; emitted += run) {
    uint64_t at = v.offset - lo;
    for (size_t i = 0; i < outer; ++i) at += index[i] * v.stride[i];
    const uint8_t* src = span.data() + at * es;
    buf.insert(buf.end(), src, src + run * es);
    if (buf.size() >= kPiece) {
      emit(v, buf, sink);
      buf.clear();
    }
    for (size_t i = outer; i-- > 0;) {
      if (++index[i] < v.shape[i]) break;
      index[i] = 0;
    }
  }
  if (!buf.empty()) emit(v, buf, sink);
}

// Steps an odometer over `dims` (indices into `index`, bounded by `len`); false when it wraps.
bool advance(std::span<const size_t> dims, std::vector<uint64_t>& index,
             std::span<const uint64_t> len) {
  for (size_t k = dims.size(); k-- > 0;) {
    if (++index[dims[k]] < len[dims[k]]) return true;
    index[dims[k]] = 0;
  }
  return false;
}

// A view over a large span, a chunk of output at a time. Each chunk is a box of the index space
// (leading indices fixed, a range of dimension p, the rest whole), so it is contiguous in the
// output; it is filled segment by segment along the box's dimension of smallest stride, whose
// elements lie closest together in storage. A Fortran-ordered array reads each byte once.
class ChunkedGather {
 public:
  ChunkedGather(const StridedView& v, const RangeReader& read, const GatherBudget& budget)
      : v_(v),
        read_(read),
        budget_(budget),
        es_(v.element_size),
        rank_(v.shape.size()),
        out_step_(rank_, 1) {
    for (size_t i = rank_; i-- > 1;) out_step_[i - 1] = out_step_[i] * v.shape[i];
  }

  void run(const ByteSink& sink) {
    const uint64_t chunk_elems = std::max<uint64_t>(1, budget_.chunk_bytes / es_);
    size_t p = 0;
    while (out_step_[p] > chunk_elems) ++p;  // ends by rank - 1, whose step is one element
    const uint64_t step = std::max<uint64_t>(1, chunk_elems / out_step_[p]);
    std::vector<size_t> leading(p);
    for (size_t i = 0; i < p; ++i) leading[i] = i;
    std::vector<uint64_t> index(rank_, 0);
    do {
      uint64_t base = v_.offset;
      for (size_t i = 0; i < p; ++i) base += index[i] * v_.stride[i];
      for (uint64_t a = 0; a < v_.shape[p]; a += step) {
        fill_box(p, base + a * v_.stride[p], std::min(step, v_.shape[p] - a));
        emit(v_, out_, sink);
      }
    } while (advance(leading, index, v_.shape));
  }

 private:
  // Fills out_ with the box whose first element is at storage element `base`: `len_p` indices
  // of dimension p, every index of the dimensions after it.
  void fill_box(size_t p, uint64_t base, uint64_t len_p) {
    std::vector<uint64_t> len(v_.shape);
    len[p] = len_p;
    out_.resize(static_cast<size_t>(len_p * out_step_[p] * es_));
    size_t s = rank_ - 1;
    for (size_t i = p; i < rank_; ++i) {
      if (len[i] > 1 && (len[s] == 1 || v_.stride[i] < v_.stride[s])) s = i;
    }
    std::vector<size_t> others;
    for (size_t i = p; i < rank_; ++i) {
      if (i != s) others.push_back(i);
    }
    std::vector<uint64_t> index(rank_, 0);
    do {
      uint64_t src = base, dst = 0;
      for (const size_t i : others) {
        src += index[i] * v_.stride[i];
        dst += index[i] * out_step_[i];
      }
      segment(src, v_.stride[s], len[s], dst, out_step_[s]);
    } while (advance(others, index, len));
  }

  // Copies `count` elements, storage element src + k*stride to output element dst + k*out_step.
  void segment(uint64_t src, uint64_t stride, uint64_t count, uint64_t dst, uint64_t out_step) {
    uint8_t* out = out_.data();
    if (stride == 0) {  // one element repeated (an expanded view)
      read_(src * es_, std::span(out + dst * es_, es_));
      for (uint64_t k = 1; k < count; ++k) {
        std::memcpy(out + (dst + k * out_step) * es_, out + dst * es_, es_);
      }
      return;
    }
    if (stride * es_ > kDenseStrideBytes) {  // far apart: an element per read
      for (uint64_t k = 0; k < count; ++k) {
        read_((src + k * stride) * es_, std::span(out + (dst + k * out_step) * es_, es_));
      }
      return;
    }
    // Close together: read what covers a run of them, at most read_bytes at a time.
    const uint64_t per_read = std::max<uint64_t>(1, budget_.read_bytes / (stride * es_));
    for (uint64_t k0 = 0; k0 < count; k0 += per_read) {
      const uint64_t k1 = std::min(count, k0 + per_read);
      const uint64_t first = src + k0 * stride;
      const size_t cover = static_cast<size_t>(((k1 - k0 - 1) * stride + 1) * es_);
      if (stride == 1 && out_step == 1) {
        read_(first * es_, std::span(out + (dst + k0) * es_, cover));
        continue;
      }
      scratch_.resize(cover);
      read_(first * es_, scratch_);
      for (uint64_t k = k0; k < k1; ++k) {
        std::memcpy(out + (dst + k * out_step) * es_, scratch_.data() + (k - k0) * stride * es_,
                    es_);
      }
    }
  }

  // Elements further apart than this are read one by one rather than with what lies between.
  static constexpr uint64_t kDenseStrideBytes = 64;

  const StridedView& v_;
  const RangeReader& read_;
  const GatherBudget& budget_;
  const unsigned es_;
  const size_t rank_;
  std::vector<uint64_t> out_step_;  // output elements per index of each dimension
  std::vector<uint8_t> out_, scratch_;
};

}  // namespace

void stream_view(const StridedView& v, const RangeReader& read, const ByteSink& sink,
                 const std::string& what, const GatherBudget& budget) {
  check_view(v, what);
  const uint64_t n = *element_count(v.shape);
  if (n == 0) return;
  if (is_row_major(v)) return stream_rows(v, n, read, sink);
  uint64_t lo = v.offset, hi = v.offset;
  for (size_t i = 0; i < v.shape.size(); ++i) hi += (v.shape[i] - 1) * v.stride[i];
  if ((hi - lo + 1) * v.element_size <= budget.span_bytes) {
    return gather_span(v, n, lo, hi, read, sink);
  }
  ChunkedGather(v, read, budget).run(sink);
}

}  // namespace torshpkg::convert
