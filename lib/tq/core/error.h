#pragma once
// Errors tq reports to the user. Every message is one line that names the file, dataset or flag
// at fault; apps/tq/main.cpp prints "tq: <message>" and exits with status 1.
#include <stdexcept>
#include <string>

namespace tq {

/// A runtime or input error with a complete, user-facing, single-line message.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A bad flag value or codec spec (still exit status 1; CLI11 handles pure syntax errors).
class UsageError : public Error {
 public:
  using Error::Error;
};

}  // namespace tq
