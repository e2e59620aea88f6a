#include "torshpkg/tensor_loader.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "load_backend.h"
#include "torshpkg/error.h"
#include "torshpkg/sha256.h"

namespace torshpkg {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// One read of the load: file bytes [file_offset, file_offset + length) go to dest_offset of
// the block.
struct Piece {
  uint64_t file_offset;
  uint64_t dest_offset;
  size_t length;
};

// Pieces cover the data buffer; their boundaries fall on multiples of `piece` in file offsets,
// so that each read of a package resource decodes whole chunks (but the first and last).
std::vector<Piece> plan_pieces(uint64_t data_start, uint64_t data_size, uint64_t piece) {
  std::vector<Piece> pieces;
  const uint64_t end = data_start + data_size;
  for (uint64_t at = data_start; at < end;) {
    const uint64_t next = std::min(end, (at / piece + 1) * piece);
    pieces.push_back({at, at - data_start, static_cast<size_t>(next - at)});
    at = next;
  }
  return pieces;
}

// The piece size: the option rounded up to a multiple of the source's read unit.
size_t effective_piece_bytes(const ByteSource& source, size_t requested) {
  const uint64_t unit = source.read_unit();
  if (unit == 0 || unit > (uint64_t{1} << 30)) return requested;
  return static_cast<size_t>((requested + unit - 1) / unit * unit);
}

void check_options(const LoadOptions& o) {
  if (o.threads < 1 || o.threads > 256) {
    throw invalid_argument("load: threads must be between 1 and 256");
  }
  if (o.piece_bytes < 4096 || o.piece_bytes > (size_t{1} << 30)) {
    throw invalid_argument("load: piece size must be between 4 KiB and 1 GiB");
  }
  if (o.buffers_per_thread < 1 || o.buffers_per_thread > 64) {
    throw invalid_argument("load: staging buffers per thread must be between 1 and 64");
  }
}

// Runs the reader threads over `pieces`; the first error stops the others and is rethrown.
void run_readers(const ByteSource& source, LoadBackend& backend, const std::vector<Piece>& pieces,
                 unsigned threads, size_t piece_bytes, unsigned buffers, LoadStats& stats) {
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mutex;  // guards first_error and stats' stage sums
  std::exception_ptr first_error;
  const auto reader = [&] {
    StageTimes times;
    try {
      const Clock::time_point made = Clock::now();
      const std::unique_ptr<LoadWorker> worker = backend.make_worker(piece_bytes, buffers);
      times.staging += seconds_since(made);
      try {
        for (size_t i = next++; i < pieces.size() && !failed; i = next++) {
          const Piece& p = pieces[i];
          worker->put(
              p.dest_offset, p.length,
              [&](std::span<uint8_t> out) { source.read_at(p.file_offset, out); }, times);
        }
      } catch (...) {
        // Copies already issued must land before the staging buffers go away.
        StageTimes ignored;
        try {
          worker->finish(ignored);
        } catch (...) {
        }
        throw;
      }
      worker->finish(times);
    } catch (...) {
      failed = true;
      const std::lock_guard lock(mutex);
      if (!first_error) first_error = std::current_exception();
    }
    const std::lock_guard lock(mutex);
    stats.staging_seconds += times.staging;
    stats.read_seconds += times.read;
    stats.copy_seconds += times.copy;
    stats.wait_seconds += times.wait;
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(reader);
  reader();
  for (std::thread& t : pool) t.join();
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace

LoadTarget parse_load_target(std::string_view text) {
  if (text == "cpu" || text == "host") return {LoadDevice::kHost, 0};
  if (text == "cuda") return {LoadDevice::kCuda, 0};
  if (text.starts_with("cuda:")) {
    const std::string_view digits = text.substr(5);
    int index = -1;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
    if (ec == std::errc() && end == digits.data() + digits.size() && !digits.empty() &&
        index >= 0 && index < 1024) {
      return {LoadDevice::kCuda, index};
    }
  }
  throw invalid_argument("device '" + std::string(text) +
                         "' is not one of cpu, cuda, cuda:N (N a device number)");
}

std::string to_string(const LoadTarget& target) {
  return target.device == LoadDevice::kHost ? "cpu" : "cuda:" + std::to_string(target.index);
}

LoadedTensors::LoadedTensors(SafetensorsHeader header, LoadTarget target,
                             std::unique_ptr<LoadBackend> backend, LoadStats stats)
    : header_(std::move(header)), target_(target), backend_(std::move(backend)), stats_(stats) {}

LoadedTensors::~LoadedTensors() = default;

void* LoadedTensors::data() const {
  return backend_->data();
}

void LoadedTensors::copy_to_host(const TensorInfo& t, uint64_t offset,
                                 std::span<uint8_t> out) const {
  if (offset > t.size() || out.size() > t.size() - offset) {
    throw invalid_argument("tensor '" + t.name + "': copy past its end");
  }
  if (!out.empty()) backend_->copy_to_host(t.begin + offset, out);
}

std::string LoadedTensors::sha256(const TensorInfo& t) const {
  if (target_.device == LoadDevice::kHost || t.size() == 0) {
    const auto* base = static_cast<const uint8_t*>(backend_->data());
    return to_hex(
        torshpkg::sha256(std::span<const uint8_t>(base ? base + t.begin : base, t.size())));
  }
  constexpr uint64_t kPiece = 8u << 20;
  std::vector<uint8_t> buf(static_cast<size_t>(std::min(kPiece, t.size())));
  Sha256 hasher;
  for (uint64_t done = 0; done < t.size();) {
    const size_t n = static_cast<size_t>(std::min(kPiece, t.size() - done));
    copy_to_host(t, done, std::span(buf.data(), n));
    hasher.update(std::span<const uint8_t>(buf.data(), n));
    done += n;
  }
  return to_hex(hasher.finish());
}

std::unique_ptr<LoadedTensors> load_tensors(const ByteSource& source, const LoadOptions& options) {
  check_options(options);
  LoadStats stats;
  const Clock::time_point init = Clock::now();
  std::unique_ptr<LoadBackend> backend = options.target.device == LoadDevice::kHost
                                             ? make_host_backend()
                                             : make_cuda_backend(options.target.index);
  stats.init_seconds = seconds_since(init);

  const Clock::time_point start = Clock::now();
  SafetensorsHeader header = read_safetensors_header(source);
  const uint64_t data_size = source.size() - header.data_start;
  backend->allocate(data_size);

  stats.bytes = data_size;
  stats.piece_bytes = effective_piece_bytes(source, options.piece_bytes);
  const std::vector<Piece> pieces = plan_pieces(header.data_start, data_size, stats.piece_bytes);
  stats.pieces = pieces.size();
  stats.threads =
      static_cast<unsigned>(std::max<size_t>(1, std::min<size_t>(options.threads, pieces.size())));
  stats.setup_seconds = seconds_since(start);
  if (!pieces.empty()) {
    run_readers(source, *backend, pieces, stats.threads, stats.piece_bytes,
                options.buffers_per_thread, stats);
  }
  stats.seconds = seconds_since(start);
  return std::make_unique<LoadedTensors>(std::move(header), options.target, std::move(backend),
                                         stats);
}

}  // namespace torshpkg
