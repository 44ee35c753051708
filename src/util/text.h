#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tandem {

std::string join(const std::vector<std::string>& parts, const std::string& sep);
// Edit distance, for "did you mean" hints.
size_t edit_distance(const std::string& a, const std::string& b);
// The candidate closest to `word`, or "" when none is close enough to suggest.
std::string closest(const std::string& word, const std::vector<std::string>& candidates);
// 64-bit FNV-1a, for short stable names; not for security.
uint64_t fnv1a(const std::string& s);
std::string hex(uint64_t v, int digits);
// The offset of the first byte that is not part of valid UTF-8, or npos.
size_t invalid_utf8_at(const std::string& s);
// At most `max_bytes` of `s`, cut on a UTF-8 character boundary.
std::string utf8_prefix(const std::string& s, size_t max_bytes);
// `text` with every occurrence of each key replaced by its value, keys tried
// in the order given (so a key that is a prefix of another goes after it).
std::string fill_template(std::string text,
                          const std::vector<std::pair<std::string, std::string>>& values);
// Where YAML or JSON text opens a flow collection ([...] or {...}) more than
// `limit` levels deep, if it does: the bracket's line and column (1-based,
// counting UTF-8 characters). Quoted scalars, JSON strings and YAML comments
// are skipped. A parser that recurses once per level can be told in advance.
std::optional<std::pair<int, int>> flow_nesting_deeper_than(const std::string& text, int limit);
// "1,234,567"
std::string with_commas(long long n);
// "912 kB", "641 MB", "2.4 GB": powers of 1024, in PostgreSQL's unit names.
std::string format_bytes(long long n);

}  // namespace tandem
