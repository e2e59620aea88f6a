#include "torshpkg/strict_json.h"

#include <algorithm>
#include <memory>

namespace torshpkg {
namespace {

// jsoncpp skips comments in some positions even in strict mode; valid JSON never has a '/'
// outside a string.
bool has_comment(std::string_view text) {
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '/') {
      return true;
    }
  }
  return false;
}

}  // namespace

bool parse_strict_json(std::string_view text, int max_depth, Json::Value& out, std::string& error) {
  if (has_comment(text)) {
    error = "comments are not allowed";
    return false;
  }
  Json::CharReaderBuilder builder;
  Json::CharReaderBuilder::strictMode(&builder.settings_);
  builder["stackLimit"] = max_depth;
  const std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  std::string errors;
  bool ok = false;
  try {
    ok = reader->parse(text.data(), text.data() + text.size(), &out, &errors);
  } catch (const Json::Exception& e) {
    // jsoncpp throws rather than returns for some limits ("Exceeded stackLimit").
    errors = e.what();
  }
  if (!ok) {
    const auto newline = errors.find('\n', errors.find('\n') + 1);
    error = errors.substr(0, newline);
    std::replace(error.begin(), error.end(), '\n', ' ');
    return false;
  }
  return true;
}

}  // namespace torshpkg
