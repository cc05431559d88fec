// json.hpp — a small JSON writer and reader for FLAT objects: the message format of the channel.
//
// Master and worker talk in one-line JSON objects, as Node's cluster does over its IPC channel:
// {"act":"listening","port":8080}. A value is a string, a 64-bit integer, a boolean or null.
//
// Deliberately not supported, and rejected by parse() with an error saying so: nested objects,
// arrays, and numbers with a fraction or an exponent. The labs never need them, and a reader that
// refuses what it cannot represent never loses data silently. Duplicate keys are rejected too: a
// message that says "port" twice is a bug in the sender, not something to guess about.
//
// Strings are bytes: dump() passes bytes >= 0x80 through unchanged (UTF-8 in, UTF-8 out) and
// parse() turns \uXXXX escapes, surrogate pairs included, into UTF-8.
//
// Also here, for an HTTP answer that nests (lab13's GET /state and GET /inbox): json_quoted()
// and json_with(), which put already-written JSON text inside an object.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

class JsonObject {
public:
    // One value. std::nullptr_t stands for JSON null.
    using Value = std::variant<std::string, std::int64_t, bool, std::nullptr_t>;

    // Setting a key that exists replaces its value in place; a new key goes to the end, so
    // dump() writes keys in the order they were first set and its output is stable.
    void set(std::string_view key, std::string_view value);
    // Without this overload a string literal would convert to bool, not to string_view.
    void set(std::string_view key, const char* value);
    void set(std::string_view key, std::int64_t value);
    // So that set("port", 8080) is not ambiguous between int64_t and bool.
    void set(std::string_view key, int value);
    void set(std::string_view key, bool value);
    void set_null(std::string_view key);
    void erase(std::string_view key);

    bool has(std::string_view key) const;
    bool is_null(std::string_view key) const;
    // The getters return `def` when the key is missing or holds a value of another type.
    std::string get_string(std::string_view key, std::string_view def = "") const;
    std::int64_t get_int(std::string_view key, std::int64_t def = 0) const;
    bool get_bool(std::string_view key, bool def = false) const;

    std::size_t size() const { return items_.size(); }
    bool empty() const { return items_.empty(); }
    const std::vector<std::pair<std::string, Value>>& items() const { return items_; }

    // Compact, one line, no trailing newline: `{"act":"listening","port":8080}`. Quotes,
    // backslashes and every control character (newline included) are escaped, so the output
    // never contains a raw newline; the channel relies on that to frame messages by lines.
    std::string dump() const;

    // Parses exactly one flat object (surrounding whitespace allowed). On failure returns
    // nullopt and, if `error` is not null, stores a message like
    // "offset 7: nested objects and arrays are not supported (flat objects only)".
    static std::optional<JsonObject> parse(std::string_view text, std::string* error);

    bool operator==(const JsonObject&) const = default;

private:
    const Value* find(std::string_view key) const;
    void put(std::string_view key, Value value);

    std::vector<std::pair<std::string, Value>> items_;  // a vector: messages have a handful of keys
};

// `text` as a JSON string literal, quotes included: "a\"b\n".
std::string json_quoted(std::string_view text);
// `object` (a dumped JSON object) with one more member whose value is already JSON text:
// json_with("{\"a\":1}", "b", "[2]") is {"a":1,"b":[2]}.
std::string json_with(const std::string& object, std::string_view key, std::string_view json_value);
