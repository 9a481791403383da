// Writing reports: stdout or an atomically replaced file (temp file + fsync + rename/link).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include "tq/core/error.h"
#include "tq/report/report.h"

namespace tq {

namespace {

namespace fs = std::filesystem;

constexpr int kTempNameAttempts = 100;

std::string errno_text(int err) { return std::strerror(err); }

// The directory a path lives in ("." for a bare file name).
fs::path directory_of(const std::string& path) {
  fs::path dir = fs::path(path).parent_path();
  return dir.empty() ? fs::path(".") : dir;
}

// Removes the temporary file unless release()d; keeps every failure path from leaving debris.
class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {}
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  int& fd() { return fd_; }
  const std::string& path() const { return path_; }
  void forget() { path_.clear(); }

 private:
  std::string path_;
  int fd_ = -1;
};

// Open a fresh temporary file next to `target` (O_EXCL, so an existing file is never reused).
std::unique_ptr<TempFile> open_temp(const std::string& target) {
  static std::atomic<unsigned> counter{0};
  const fs::path p(target);
  const fs::path dir = directory_of(target);
  for (int attempt = 0; attempt < kTempNameAttempts; ++attempt) {
    // fmt rather than operator+ chains: GCC 12 reports a false -Wrestrict on `"." + string`.
    const std::string name = fmt::format(".{}.tq-tmp.{}.{}", p.filename().string(), ::getpid(),
                                         counter.fetch_add(1));
    auto tmp = std::make_unique<TempFile>((dir / name).string());
    // 0666 & ~umask: the same mode a plain fopen() would give the final file.
    tmp->fd() = ::open(tmp->path().c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (tmp->fd() >= 0) return tmp;
    const int err = errno;
    tmp->forget();  // not ours: never unlink a file another process created
    if (err != EEXIST) throw Error("cannot write '" + target + "': " + errno_text(err));
  }
  throw Error("cannot write '" + target + "': no free temporary file name in '" + dir.string() + "'");
}

void write_all(int fd, const std::string& content, const std::string& target) {
  const char* data = content.data();
  size_t left = content.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, data, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error("cannot write '" + target + "': " + errno_text(errno));
    }
    data += n;
    left -= static_cast<size_t>(n);
  }
}

// Make the rename durable; failure here cannot lose data already renamed, so it is ignored.
void sync_directory(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)::fsync(fd);
    ::close(fd);
  }
}

std::string exists_message(const std::string& path) {
  return "output file '" + path + "' already exists (use --force to overwrite it)";
}

}  // namespace

void check_output(const std::string& path, bool force) {
  if (path.empty()) return;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) throw Error("output file '" + path + "' is a directory");
    if (!force) throw Error(exists_message(path));
  }
  const fs::path dir = directory_of(path);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw Error("cannot write '" + path + "': directory '" + dir.string() + "' does not exist");
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    throw Error("cannot write '" + path + "': directory '" + dir.string() + "' is not writable");
  }
}

void write_file_atomic(const std::string& path, const std::string& content, bool overwrite) {
  if (path.empty()) throw Error("cannot write a file with an empty name");
  auto tmp = open_temp(path);
  write_all(tmp->fd(), content, path);
  if (::fsync(tmp->fd()) != 0) throw Error("cannot write '" + path + "': " + errno_text(errno));
  const int fd = tmp->fd();
  tmp->fd() = -1;
  if (::close(fd) != 0) throw Error("cannot write '" + path + "': " + errno_text(errno));

  if (overwrite) {
    if (::rename(tmp->path().c_str(), path.c_str()) != 0) {
      throw Error("cannot write '" + path + "': " + errno_text(errno));
    }
    tmp->forget();
  } else if (::link(tmp->path().c_str(), path.c_str()) == 0) {
    // link() never replaces an existing file, so a file created since check_output() survives.
    // The TempFile destructor unlinks the temporary name.
  } else {
    const int err = errno;
    if (err == EEXIST) throw Error(exists_message(path));
    // File systems without hard links: fall back to a checked rename (a tiny race remains).
    if (err != EPERM && err != ENOTSUP && err != EOPNOTSUPP && err != EMLINK) {
      throw Error("cannot write '" + path + "': " + errno_text(err));
    }
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) throw Error(exists_message(path));
    if (::rename(tmp->path().c_str(), path.c_str()) != 0) {
      throw Error("cannot write '" + path + "': " + errno_text(errno));
    }
    tmp->forget();
  }
  sync_directory(directory_of(path));
}

void emit_report(const Report& r, const OutputOptions& options, const Json& run_info) {
  const std::string text = render_report(r, options.format, run_info);
  if (!options.out.empty()) {
    write_file_atomic(options.out, text, options.force);
    return;
  }
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0) {
    throw Error("cannot write to standard output: " + errno_text(errno));
  }
}

}  // namespace tq
