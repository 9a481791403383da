#include "tq/io/hdf5.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "tq/core/error.h"

namespace tq::h5 {

namespace {

/// Error messages are one line: fold any newline HDF5 (or a file name) brings in.
std::string one_line(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  std::replace(s.begin(), s.end(), '\r', ' ');
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

/// The description of the innermost (first detected) entry of this thread's HDF5 error stack.
std::string innermost_hdf5_message() {
  std::string msg;
  auto walk = [](unsigned n, const H5E_error2_t* err, void* data) -> herr_t {
    if (n == 0 && err != nullptr && err->desc != nullptr) {
      *static_cast<std::string*>(data) = err->desc;
    }
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk, &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg;
}

/// Number of elements in an attribute's dataspace.
hssize_t attr_points(hid_t attr) {
  Dataspace space(H5Aget_space(attr));
  return space.valid() ? H5Sget_simple_extent_npoints(space.get()) : -1;
}

struct OpenAttr {
  Attribute attr;
  Datatype type;
  H5T_class_t cls = H5T_NO_CLASS;
  hssize_t points = 0;
};

OpenAttr open_attr(hid_t obj, const std::string& name, const std::string& file,
                   const std::string& object) {
  OpenAttr a;
  a.attr = Attribute(H5Aopen(obj, name.c_str(), H5P_DEFAULT));
  if (!a.attr.valid()) fail_hdf5(file, object, fmt::format("cannot open attribute '{}'", name));
  a.type = Datatype(H5Aget_type(a.attr.get()));
  if (!a.type.valid()) fail_hdf5(file, object, fmt::format("attribute '{}': no type", name));
  a.cls = H5Tget_class(a.type.get());
  a.points = attr_points(a.attr.get());
  return a;
}

void require_scalar(const OpenAttr& a, const std::string& name, const std::string& file,
                    const std::string& object) {
  if (a.points != 1) {
    fail(file, object, fmt::format("attribute '{}' must hold one value, not {}", name, a.points));
  }
}

std::string read_string_value(const OpenAttr& a, const std::string& name, const std::string& file,
                              const std::string& object) {
  if (H5Tis_variable_str(a.type.get()) > 0) {
    Datatype mem(H5Tcopy(H5T_C_S1));
    H5Tset_size(mem.get(), H5T_VARIABLE);
    H5Tset_cset(mem.get(), H5Tget_cset(a.type.get()));
    char* p = nullptr;
    if (H5Aread(a.attr.get(), mem.get(), &p) < 0) {
      fail_hdf5(file, object, fmt::format("cannot read attribute '{}'", name));
    }
    std::string s = p != nullptr ? p : "";
    H5free_memory(p);
    return s;
  }
  const size_t n = H5Tget_size(a.type.get());
  std::vector<char> buf(n + 1, '\0');
  // Reading with the file's own string type copies the bytes without conversion.
  if (H5Aread(a.attr.get(), a.type.get(), buf.data()) < 0) {
    fail_hdf5(file, object, fmt::format("cannot read attribute '{}'", name));
  }
  std::string s(buf.data());  // stops at the first NUL (null-terminated or null-padded)
  if (H5Tget_strpad(a.type.get()) == H5T_STR_SPACEPAD) {
    while (!s.empty() && s.back() == ' ') s.pop_back();
  }
  return s;
}

void replace_attr(hid_t obj, const std::string& name, hid_t type, const void* value,
                  const std::string& file, const std::string& object) {
  silence_errors();
  if (H5Aexists(obj, name.c_str()) > 0 && H5Adelete(obj, name.c_str()) < 0) {
    fail_hdf5(file, object, fmt::format("cannot replace attribute '{}'", name));
  }
  Dataspace space(H5Screate(H5S_SCALAR));
  Attribute attr(H5Acreate2(obj, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!attr.valid() || H5Awrite(attr.get(), type, value) < 0) {
    fail_hdf5(file, object, fmt::format("cannot write attribute '{}'", name));
  }
}

}  // namespace

void silence_errors() {
  // The automatic error printer is a per-thread setting in thread-safe builds.
  thread_local bool silenced = false;
  if (!silenced) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    silenced = true;
  }
}

void fail(const std::string& file, const std::string& object, const std::string& what) {
  if (object.empty()) throw Error(one_line(fmt::format("{}: {}", file, what)));
  throw Error(one_line(fmt::format("{}: {}: {}", file, object, what)));
}

void fail_hdf5(const std::string& file, const std::string& object, const std::string& what) {
  const std::string detail = innermost_hdf5_message();
  fail(file, object, detail.empty() ? what : fmt::format("{} ({})", what, detail));
}

File open_file(const std::string& path, bool writable) {
  silence_errors();
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) fail(path, "", "no such file");
  if (!fs::is_regular_file(st)) fail(path, "", "not a regular file");
#if H5_VERSION_GE(1, 12, 0)
  const htri_t is_hdf5 = H5Fis_accessible(path.c_str(), H5P_DEFAULT);
#else
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
#endif
  if (is_hdf5 < 0) fail_hdf5(path, "", "cannot read file");
  if (is_hdf5 == 0) fail(path, "", "not an HDF5 file");
  PropList fapl(H5Pcreate(H5P_FILE_ACCESS));
#if H5_VERSION_GE(1, 10, 7)
  // Keep HDF5's file locking, but do not fail on file systems that do not support it.
  H5Pset_file_locking(fapl.get(), true, true);
#endif
  File f(H5Fopen(path.c_str(), writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, fapl.get()));
  if (!f.valid()) fail_hdf5(path, "", "cannot open HDF5 file");
  return f;
}

File create_file(const std::string& path) {
  silence_errors();
  // Objects carry no modification times: the same content gives the same bytes (HDF5 would
  // otherwise stamp every object header with the creation second).
  PropList fcpl(H5Pcreate(H5P_FILE_CREATE));
  if (!fcpl.valid() || H5Pset_obj_track_times(fcpl.get(), false) < 0) {
    fail_hdf5(path, "", "cannot create file property list");
  }
  File f(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.get(), H5P_DEFAULT));
  if (!f.valid()) fail_hdf5(path, "", "cannot create HDF5 file");
  return f;
}

bool exists(hid_t loc, const std::string& path) {
  silence_errors();
  if (path.empty()) return false;
  if (path == "/") return true;
  // H5Lexists("a/b") fails (rather than returning false) when "a" is missing: test each prefix.
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (H5Lexists(loc, path.substr(0, i).c_str(), H5P_DEFAULT) <= 0) return false;
    }
  }
  return true;
}

H5I_type_t object_kind(hid_t loc, const std::string& path) {
  silence_errors();
  const hid_t obj = H5Oopen(loc, path.c_str(), H5P_DEFAULT);
  if (obj < 0) return H5I_BADID;
  const H5I_type_t t = H5Iget_type(obj);
  H5Oclose(obj);
  return t;
}

Group open_group(hid_t loc, const std::string& path, const std::string& file,
                 const std::string& object) {
  silence_errors();
  Group g(H5Gopen2(loc, path.c_str(), H5P_DEFAULT));
  if (!g.valid()) fail_hdf5(file, object, "cannot open group");
  return g;
}

Group create_group(hid_t loc, const std::string& path, const std::string& file,
                   const std::string& object) {
  silence_errors();
  PropList gcpl(H5Pcreate(H5P_GROUP_CREATE));
  if (!gcpl.valid() || H5Pset_obj_track_times(gcpl.get(), false) < 0) {
    fail_hdf5(file, object, "cannot create group property list");
  }
  Group g(H5Gcreate2(loc, path.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT));
  if (!g.valid()) fail_hdf5(file, object, "cannot create group");
  return g;
}

Dataset open_dataset(hid_t loc, const std::string& path, const std::string& file,
                     const std::string& object) {
  silence_errors();
  Dataset d(H5Dopen2(loc, path.c_str(), H5P_DEFAULT));
  if (!d.valid()) fail_hdf5(file, object, "cannot open dataset");
  return d;
}

std::vector<std::string> members(hid_t group, const std::string& file, const std::string& object) {
  silence_errors();
  H5G_info_t info;
  if (H5Gget_info(group, &info) < 0) fail_hdf5(file, object, "cannot list group");
  std::vector<std::string> names;
  names.reserve(info.nlinks);
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t len =
        H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (len < 0) fail_hdf5(file, object, "cannot list group");
    std::string name(static_cast<size_t>(len) + 1, '\0');
    H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(),
                       H5P_DEFAULT);
    name.resize(static_cast<size_t>(len));
    names.push_back(std::move(name));
  }
  return names;
}

Dataset create_dataset(hid_t loc, const std::string& name, hid_t file_type,
                       const std::vector<hsize_t>& dims, const Layout& layout,
                       const std::string& file, const std::string& object) {
  silence_errors();
  Dataspace space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  PropList dcpl(H5Pcreate(H5P_DATASET_CREATE));
  if (!space.valid() || !dcpl.valid()) fail_hdf5(file, object, "cannot create dataspace");
  if (H5Pset_obj_track_times(dcpl.get(), false) < 0) {
    fail_hdf5(file, object, "cannot disable object time tracking");
  }
  if (!layout.chunk.empty()) {
    if (layout.chunk.size() != dims.size() ||
        H5Pset_chunk(dcpl.get(), static_cast<int>(dims.size()), layout.chunk.data()) < 0) {
      fail_hdf5(file, object, "cannot set chunk shape");
    }
    if (layout.deflate > 0) {
      if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) <= 0) {
        fail(file, object, "this HDF5 library has no deflate filter");
      }
      if (H5Pset_shuffle(dcpl.get()) < 0 ||
          H5Pset_deflate(dcpl.get(), static_cast<unsigned>(layout.deflate)) < 0) {
        fail_hdf5(file, object, "cannot set deflate filter");
      }
    }
  } else if (layout.deflate > 0) {
    fail(file, object, "deflate needs a chunked dataset");
  }
  Dataset d(H5Dcreate2(loc, name.c_str(), file_type, space.get(), H5P_DEFAULT, dcpl.get(),
                       H5P_DEFAULT));
  if (!d.valid()) fail_hdf5(file, object, "cannot create dataset");
  return d;
}

std::vector<hsize_t> shape(hid_t dataset, const std::string& file, const std::string& object) {
  silence_errors();
  Dataspace space(H5Dget_space(dataset));
  if (!space.valid()) fail_hdf5(file, object, "cannot read dataspace");
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) fail_hdf5(file, object, "cannot read dataspace");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return dims;
}

Datatype type_of(hid_t dataset, const std::string& file, const std::string& object) {
  silence_errors();
  Datatype t(H5Dget_type(dataset));
  if (!t.valid()) fail_hdf5(file, object, "cannot read datatype");
  return t;
}

void read_slab(hid_t dataset, hid_t mem_type, const std::vector<hsize_t>& start,
               const std::vector<hsize_t>& count, void* buf, const std::string& file,
               const std::string& object) {
  silence_errors();
  Dataspace fspace(H5Dget_space(dataset));
  Dataspace mspace(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr));
  if (!fspace.valid() || !mspace.valid() ||
      H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(),
                          nullptr) < 0) {
    fail_hdf5(file, object, "cannot select block");
  }
  if (H5Dread(dataset, mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, buf) < 0) {
    fail_hdf5(file, object, "cannot read data");
  }
}

void write_slab(hid_t dataset, hid_t mem_type, const std::vector<hsize_t>& start,
                const std::vector<hsize_t>& count, const void* buf, const std::string& file,
                const std::string& object) {
  silence_errors();
  Dataspace fspace(H5Dget_space(dataset));
  Dataspace mspace(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr));
  if (!fspace.valid() || !mspace.valid() ||
      H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(),
                          nullptr) < 0) {
    fail_hdf5(file, object, "cannot select block");
  }
  if (H5Dwrite(dataset, mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, buf) < 0) {
    fail_hdf5(file, object, "cannot write data");
  }
}

bool has_attr(hid_t obj, const std::string& name) {
  silence_errors();
  return H5Aexists(obj, name.c_str()) > 0;
}

std::vector<std::string> attr_names(hid_t obj, const std::string& file, const std::string& object) {
  silence_errors();
  std::vector<std::string> names;
  auto collect = [](hid_t, const char* attr_name, const H5A_info_t*, void* data) -> herr_t {
    static_cast<std::vector<std::string>*>(data)->emplace_back(attr_name);
    return 0;
  };
  if (H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect, &names) < 0) {
    fail_hdf5(file, object, "cannot list attributes");
  }
  return names;
}

std::optional<std::string> attr_string(hid_t obj, const std::string& name,
                                       const std::string& file, const std::string& object) {
  if (!has_attr(obj, name)) return std::nullopt;
  const OpenAttr a = open_attr(obj, name, file, object);
  if (a.cls != H5T_STRING) fail(file, object, fmt::format("attribute '{}' must be a string", name));
  require_scalar(a, name, file, object);
  return read_string_value(a, name, file, object);
}

std::optional<int64_t> attr_int(hid_t obj, const std::string& name, const std::string& file,
                                const std::string& object) {
  if (!has_attr(obj, name)) return std::nullopt;
  const OpenAttr a = open_attr(obj, name, file, object);
  if (a.cls != H5T_INTEGER) {
    fail(file, object, fmt::format("attribute '{}' must be an integer", name));
  }
  require_scalar(a, name, file, object);
  int64_t v = 0;
  if (H5Aread(a.attr.get(), H5T_NATIVE_INT64, &v) < 0) {
    fail_hdf5(file, object, fmt::format("cannot read attribute '{}'", name));
  }
  return v;
}

std::optional<double> attr_double(hid_t obj, const std::string& name, const std::string& file,
                                  const std::string& object) {
  if (!has_attr(obj, name)) return std::nullopt;
  const OpenAttr a = open_attr(obj, name, file, object);
  if (a.cls != H5T_INTEGER && a.cls != H5T_FLOAT) {
    fail(file, object, fmt::format("attribute '{}' must be a number", name));
  }
  require_scalar(a, name, file, object);
  double v = 0;
  if (H5Aread(a.attr.get(), H5T_NATIVE_DOUBLE, &v) < 0) {
    fail_hdf5(file, object, fmt::format("cannot read attribute '{}'", name));
  }
  return v;
}

std::string attr_text(hid_t obj, const std::string& name, const std::string& file,
                      const std::string& object) {
  const OpenAttr a = open_attr(obj, name, file, object);
  if (a.cls == H5T_STRING && a.points == 1) return read_string_value(a, name, file, object);
  if ((a.cls != H5T_INTEGER && a.cls != H5T_FLOAT) || a.points < 1) {
    return "<unsupported attribute type>";
  }
  std::vector<std::string> parts;
  if (a.cls == H5T_INTEGER) {
    std::vector<int64_t> v(static_cast<size_t>(a.points));
    if (H5Aread(a.attr.get(), H5T_NATIVE_INT64, v.data()) < 0) {
      fail_hdf5(file, object, fmt::format("cannot read attribute '{}'", name));
    }
    for (int64_t x : v) parts.push_back(fmt::format("{}", x));
  } else {
    std::vector<double> v(static_cast<size_t>(a.points));
    if (H5Aread(a.attr.get(), H5T_NATIVE_DOUBLE, v.data()) < 0) {
      fail_hdf5(file, object, fmt::format("cannot read attribute '{}'", name));
    }
    for (double x : v) parts.push_back(fmt::format("{}", x));  // shortest round-trip form
  }
  if (parts.size() == 1) return parts[0];
  return fmt::format("[{}]", fmt::join(parts, ", "));
}

void write_attr(hid_t obj, const std::string& name, const std::string& value,
                const std::string& file, const std::string& object) {
  silence_errors();
  Datatype type(H5Tcopy(H5T_C_S1));
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  const char* p = value.c_str();
  replace_attr(obj, name, type.get(), &p, file, object);
}

void write_attr(hid_t obj, const std::string& name, int64_t value, const std::string& file,
                const std::string& object) {
  replace_attr(obj, name, H5T_STD_I64LE, &value, file, object);
}

void write_attr(hid_t obj, const std::string& name, double value, const std::string& file,
                const std::string& object) {
  replace_attr(obj, name, H5T_IEEE_F64LE, &value, file, object);
}

// Binary16: 1 sign bit (15), 5 exponent bits (10..14, bias 15), 10 mantissa bits (0..9), with
// the implied leading 1 (H5T_NORM_IMPLIED is inherited from the IEEE f32 it is copied from).
Datatype make_fp16_type() {
  silence_errors();
  Datatype t(H5Tcopy(H5T_IEEE_F32LE));
  if (!t.valid() || H5Tset_fields(t.get(), 15, 10, 5, 0, 10) < 0 || H5Tset_size(t.get(), 2) < 0 ||
      H5Tset_ebias(t.get(), 15) < 0) {
    throw Error("HDF5: cannot build the float16 datatype");
  }
  return t;
}

namespace {
bool float_layout_is(hid_t type, size_t epos, size_t esize, size_t msize, size_t ebias) {
  if (H5Tget_class(type) != H5T_FLOAT || H5Tget_size(type) != 2) return false;
  size_t spos = 0, ep = 0, es = 0, mpos = 0, ms = 0;
  if (H5Tget_fields(type, &spos, &ep, &es, &mpos, &ms) < 0) return false;
  return spos == 15 && ep == epos && es == esize && mpos == 0 && ms == msize &&
         H5Tget_ebias(type) == ebias;
}
}  // namespace

bool is_fp16_layout(hid_t type) { return float_layout_is(type, 10, 5, 10, 15); }
bool is_bf16_layout(hid_t type) { return float_layout_is(type, 7, 8, 7, 127); }

}  // namespace tq::h5
