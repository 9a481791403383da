#pragma once
// A small RAII layer over the HDF5 1.10 C API, just what the KV dump reader/writer needs.
//
// - Every HDF5 identifier is owned by a move-only `Id<Close>`; it is closed on destruction.
//   Predefined types (H5T_NATIVE_FLOAT, ...) are passed around as plain hid_t and never owned.
// - HDF5's own error printing is switched off (per thread: the error stack of a thread-safe
//   build is per thread); a failing call becomes a tq::Error with one line
//   "<file>: <object>: <what>: <HDF5's innermost message>".
// - Not thread-safe by design: Debian's HDF5 serialises every call behind one global lock, so
//   callers use these helpers from one thread.
#include <hdf5.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tq::h5 {

inline constexpr hid_t kInvalidId = -1;

/// Move-only owner of one HDF5 identifier, released with `Close`.
template <herr_t (*Close)(hid_t)>
class Id {
 public:
  Id() = default;
  explicit Id(hid_t id) : id_(id) {}
  ~Id() { reset(); }
  Id(Id&& o) noexcept : id_(o.id_) { o.id_ = kInvalidId; }
  Id& operator=(Id&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      o.id_ = kInvalidId;
    }
    return *this;
  }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  /// Close now, ignoring failure (destructors must not throw).
  void reset() {
    if (id_ >= 0) Close(id_);
    id_ = kInvalidId;
  }
  /// Close now and report whether HDF5 succeeded (used where a failed close means lost data).
  bool close() {
    const herr_t r = id_ >= 0 ? Close(id_) : 0;
    id_ = kInvalidId;
    return r >= 0;
  }

 private:
  hid_t id_ = kInvalidId;
};

using File = Id<H5Fclose>;
using Group = Id<H5Gclose>;
using Dataset = Id<H5Dclose>;
using Dataspace = Id<H5Sclose>;
using Datatype = Id<H5Tclose>;
using Attribute = Id<H5Aclose>;
using PropList = Id<H5Pclose>;

/// Switch off HDF5's automatic error printing for the calling thread (idempotent, cheap).
void silence_errors();

/// Throw tq::Error "<file>: <object>: <what>" (object omitted when empty).
[[noreturn]] void fail(const std::string& file, const std::string& object, const std::string& what);
/// Like fail(), with HDF5's innermost error-stack message appended (for failed HDF5 calls).
[[noreturn]] void fail_hdf5(const std::string& file, const std::string& object,
                            const std::string& what);

// ---- files, groups, datasets ---------------------------------------------------------------

/// Open an existing file; checks that it exists, is a regular file and is HDF5.
File open_file(const std::string& path, bool writable = false);
/// Create (truncate) a file.
File create_file(const std::string& path);

/// True when `path` (relative to `loc`, may contain '/') names an existing link; every
/// intermediate component is checked, so a missing parent gives false instead of an error.
bool exists(hid_t loc, const std::string& path);
/// What an existing link points at: H5I_GROUP, H5I_DATASET, H5I_DATATYPE or H5I_BADID.
H5I_type_t object_kind(hid_t loc, const std::string& path);

Group open_group(hid_t loc, const std::string& path, const std::string& file,
                 const std::string& object);
Group create_group(hid_t loc, const std::string& path, const std::string& file,
                   const std::string& object);
Dataset open_dataset(hid_t loc, const std::string& path, const std::string& file,
                     const std::string& object);
/// Names of a group's direct members, in HDF5's name order.
std::vector<std::string> members(hid_t group, const std::string& file, const std::string& object);

/// Dataset creation knobs: chunk shape (empty = contiguous) and deflate level (0 = off;
/// deflate also turns on the byte-shuffle filter, which helps float data a lot).
struct Layout {
  std::vector<hsize_t> chunk;
  int deflate = 0;
};
Dataset create_dataset(hid_t loc, const std::string& name, hid_t file_type,
                       const std::vector<hsize_t>& dims, const Layout& layout,
                       const std::string& file, const std::string& object);

/// Dataset shape (rank = size of the vector; a scalar dataset gives an empty vector).
std::vector<hsize_t> shape(hid_t dataset, const std::string& file, const std::string& object);
/// The dataset's file datatype (owned copy).
Datatype type_of(hid_t dataset, const std::string& file, const std::string& object);

/// Read the block [start, start + count) of a dataset into `buf`, converting to `mem_type`.
void read_slab(hid_t dataset, hid_t mem_type, const std::vector<hsize_t>& start,
               const std::vector<hsize_t>& count, void* buf, const std::string& file,
               const std::string& object);
/// Write `buf` (of `mem_type`) into the block [start, start + count) of a dataset.
void write_slab(hid_t dataset, hid_t mem_type, const std::vector<hsize_t>& start,
                const std::vector<hsize_t>& count, const void* buf, const std::string& file,
                const std::string& object);

// ---- attributes ----------------------------------------------------------------------------
// Readers return nullopt when the attribute is absent and throw when it exists with the wrong
// type or more than one element. Strings may be fixed- or variable-length (h5py writes Python
// str as variable-length UTF-8, numpy bytes as fixed-length).

bool has_attr(hid_t obj, const std::string& name);
std::vector<std::string> attr_names(hid_t obj, const std::string& file, const std::string& object);
std::optional<std::string> attr_string(hid_t obj, const std::string& name,
                                       const std::string& file, const std::string& object);
std::optional<int64_t> attr_int(hid_t obj, const std::string& name, const std::string& file,
                                const std::string& object);
std::optional<double> attr_double(hid_t obj, const std::string& name, const std::string& file,
                                  const std::string& object);
/// Any attribute rendered as text: strings as-is, numbers in shortest round-trip form, arrays
/// as "[a, b, ...]".
std::string attr_text(hid_t obj, const std::string& name, const std::string& file,
                      const std::string& object);

/// Write (replace) scalar attributes: variable-length UTF-8 string, int64, float64.
void write_attr(hid_t obj, const std::string& name, const std::string& value,
                const std::string& file, const std::string& object);
void write_attr(hid_t obj, const std::string& name, int64_t value, const std::string& file,
                const std::string& object);
void write_attr(hid_t obj, const std::string& name, double value, const std::string& file,
                const std::string& object);

// ---- datatypes -------------------------------------------------------------------------------

/// The IEEE binary16 type exactly as h5py builds it for numpy float16 (little-endian).
Datatype make_fp16_type();
/// True when `type` is a 2-byte float with binary16's bit layout (sign 15, exponent 10..14
/// bias 15, mantissa 0..9), i.e. what h5py writes for float16.
bool is_fp16_layout(hid_t type);
/// True when `type` is a 2-byte float with bfloat16's layout (exponent 7..14 bias 127).
bool is_bf16_layout(hid_t type);

}  // namespace tq::h5
