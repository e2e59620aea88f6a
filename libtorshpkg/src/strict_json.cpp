#include "torshpkg/strict_json.h"

#include <algorithm>
#include <memory>

namespace torshpkg {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// What jsoncpp lets through even in strict mode, found outside strings: comments (valid JSON
// never has a '/' there) and numbers with a leading zero ("01", "-007"); empty when neither.
std::string lenient_spot(std::string_view text) {
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
      return "comments are not allowed";
    } else if ((c == '-' || is_digit(c)) &&
               (i == 0 || !(is_digit(text[i - 1]) || text[i - 1] == '.' || text[i - 1] == 'e' ||
                            text[i - 1] == 'E' || text[i - 1] == '+' || text[i - 1] == '-'))) {
      // The start of a number: its integer part is 0 or does not begin with 0.
      const size_t int_part = c == '-' ? i + 1 : i;
      if (int_part + 1 < text.size() && text[int_part] == '0' && is_digit(text[int_part + 1])) {
        return "a number has a leading zero";
      }
    }
  }
  return "";
}

}  // namespace

Json::Value parse_strict_json(std::string_view text, int max_depth,
                              const std::function<Error(const std::string& reason)>& error) {
  if (const std::string spot = lenient_spot(text); !spot.empty()) throw error(spot);
  Json::Value out;
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
    std::string reason = errors.substr(0, newline);
    std::replace(reason.begin(), reason.end(), '\n', ' ');
    throw error(reason);
  }
  return out;
}

}  // namespace torshpkg
