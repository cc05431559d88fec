#include "json.hpp"

#include <charconv>
#include <cstdio>

// --- the object ---------------------------------------------------------------------------

const JsonObject::Value* JsonObject::find(std::string_view key) const {
    for (const auto& [k, v] : items_)
        if (k == key) return &v;
    return nullptr;
}

void JsonObject::put(std::string_view key, Value value) {
    for (auto& [k, v] : items_) {
        if (k == key) {
            v = std::move(value);
            return;
        }
    }
    items_.emplace_back(std::string(key), std::move(value));
}

void JsonObject::set(std::string_view key, std::string_view value) { put(key, std::string(value)); }
void JsonObject::set(std::string_view key, const char* value) { put(key, std::string(value)); }
void JsonObject::set(std::string_view key, std::int64_t value) { put(key, value); }
void JsonObject::set(std::string_view key, int value) { put(key, static_cast<std::int64_t>(value)); }
void JsonObject::set(std::string_view key, bool value) { put(key, value); }
void JsonObject::set_null(std::string_view key) { put(key, nullptr); }

void JsonObject::erase(std::string_view key) {
    for (auto it = items_.begin(); it != items_.end(); ++it) {
        if (it->first == key) {
            items_.erase(it);
            return;
        }
    }
}

bool JsonObject::has(std::string_view key) const { return find(key) != nullptr; }

bool JsonObject::is_null(std::string_view key) const {
    const Value* v = find(key);
    return v && std::holds_alternative<std::nullptr_t>(*v);
}

std::string JsonObject::get_string(std::string_view key, std::string_view def) const {
    const Value* v = find(key);
    if (v)
        if (auto* s = std::get_if<std::string>(v)) return *s;
    return std::string(def);
}

std::int64_t JsonObject::get_int(std::string_view key, std::int64_t def) const {
    const Value* v = find(key);
    if (v)
        if (auto* n = std::get_if<std::int64_t>(v)) return *n;
    return def;
}

bool JsonObject::get_bool(std::string_view key, bool def) const {
    const Value* v = find(key);
    if (v)
        if (auto* b = std::get_if<bool>(v)) return *b;
    return def;
}

// --- writing ------------------------------------------------------------------------------

namespace {

void append_quoted(std::string& out, std::string_view s) {
    out += '"';
    for (char c : s) {
        auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (u < 0x20) {
            // \uXXXX for every control character: one rule, and no raw newline can reach the wire.
            char esc[8];
            std::snprintf(esc, sizeof esc, "\\u%04x", u);
            out += esc;
        } else {
            out += c;
        }
    }
    out += '"';
}

}  // namespace

std::string JsonObject::dump() const {
    std::string out = "{";
    bool first = true;
    for (const auto& [key, value] : items_) {
        if (!first) out += ',';
        first = false;
        append_quoted(out, key);
        out += ':';
        if (auto* s = std::get_if<std::string>(&value)) append_quoted(out, *s);
        else if (auto* n = std::get_if<std::int64_t>(&value)) out += std::to_string(*n);
        else if (auto* b = std::get_if<bool>(&value)) out += *b ? "true" : "false";
        else out += "null";
    }
    out += '}';
    return out;
}

// --- reading ------------------------------------------------------------------------------

namespace {

// A recursive-descent reader with one level: the object, its keys and its scalar values.
// Every method returns false after recording the first error; nothing is thrown.
class Reader {
public:
    explicit Reader(std::string_view text) : s_(text) {}

    bool object(JsonObject& out) {
        skip_space();
        if (!expect('{', "expected '{' (a message is a JSON object)")) return false;
        skip_space();
        if (peek() == '}') {
            ++i_;
            return end();
        }
        for (;;) {
            skip_space();
            std::string key;
            if (peek() != '"') return fail("expected a string key");
            if (!string(key)) return false;
            if (out.has(key)) return fail("duplicate key \"" + key + "\"");
            skip_space();
            if (!expect(':', "expected ':' after a key")) return false;
            skip_space();
            if (!value(out, key)) return false;
            skip_space();
            if (peek() == ',') {
                ++i_;
                continue;
            }
            if (peek() == '}') {
                ++i_;
                return end();
            }
            return fail("expected ',' or '}' after a value");
        }
    }

    const std::string& error() const { return error_; }

private:
    static constexpr int kEnd = -1;

    int peek() const { return i_ < s_.size() ? static_cast<unsigned char>(s_[i_]) : kEnd; }

    bool fail(const std::string& what) {
        error_ = "offset " + std::to_string(i_) + ": " + what;
        return false;
    }

    bool expect(char c, const char* what) {
        if (peek() != static_cast<unsigned char>(c)) return fail(what);
        ++i_;
        return true;
    }

    void skip_space() {
        while (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r') ++i_;
    }

    // After the closing brace only whitespace may follow: "{}x" is not one object.
    bool end() {
        skip_space();
        if (i_ != s_.size()) return fail("unexpected characters after the object");
        return true;
    }

    bool value(JsonObject& out, const std::string& key) {
        int c = peek();
        if (c == '"') {
            std::string s;
            if (!string(s)) return false;
            out.set(key, s);
            return true;
        }
        if (c == '-' || (c >= '0' && c <= '9')) {
            std::int64_t n = 0;
            if (!number(n)) return false;
            out.set(key, n);
            return true;
        }
        if (c == '{' || c == '[') return fail("nested objects and arrays are not supported (flat objects only)");
        if (literal("true")) {
            out.set(key, true);
            return true;
        }
        if (literal("false")) {
            out.set(key, false);
            return true;
        }
        if (literal("null")) {
            out.set_null(key);
            return true;
        }
        if (c == kEnd) return fail("unexpected end of input, expected a value");
        return fail("expected a value (string, integer, true, false or null)");
    }

    bool literal(std::string_view word) {
        if (s_.substr(i_, word.size()) != word) return false;
        i_ += word.size();
        return true;
    }

    bool number(std::int64_t& out) {
        size_t start = i_;
        if (peek() == '-') ++i_;
        if (!(peek() >= '0' && peek() <= '9')) return fail("expected a digit");
        // JSON forbids leading zeros ("007"): they read as octal in some languages.
        if (peek() == '0' && i_ + 1 < s_.size() && s_[i_ + 1] >= '0' && s_[i_ + 1] <= '9')
            return fail("leading zeros are not allowed in numbers");
        while (peek() >= '0' && peek() <= '9') ++i_;
        if (peek() == '.' || peek() == 'e' || peek() == 'E')
            return fail("numbers with a fraction or an exponent are not supported (integers only)");
        auto [ptr, ec] = std::from_chars(s_.data() + start, s_.data() + i_, out);
        if (ec != std::errc() || ptr != s_.data() + i_) {
            i_ = start;
            return fail("integer out of range (64-bit signed)");
        }
        return true;
    }

    bool hex4(unsigned& out) {
        out = 0;
        for (int k = 0; k < 4; ++k) {
            int c = peek();
            unsigned d;
            if (c >= '0' && c <= '9') d = c - '0';
            else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
            else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
            else return fail("\\u must be followed by four hex digits");
            out = out * 16 + d;
            ++i_;
        }
        return true;
    }

    static void append_utf8(std::string& out, unsigned cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    // \uXXXX, where a character outside the Basic Multilingual Plane comes as two escapes, a
    // high surrogate then a low one (the way JavaScript strings store it). A lone half has no
    // UTF-8 encoding, so it is an error rather than a silently mangled string.
    bool unicode_escape(std::string& out) {
        unsigned cp;
        if (!hex4(cp)) return false;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return fail("unpaired low surrogate in \\u escape");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (!literal("\\u")) return fail("high surrogate not followed by a \\u low surrogate");
            unsigned low;
            if (!hex4(low)) return false;
            if (low < 0xDC00 || low > 0xDFFF) return fail("high surrogate not followed by a low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        append_utf8(out, cp);
        return true;
    }

    bool string(std::string& out) {
        ++i_;  // the opening quote
        for (;;) {
            int c = peek();
            if (c == kEnd) return fail("unterminated string");
            if (c == '"') {
                ++i_;
                return true;
            }
            if (c < 0x20) return fail("control character in a string must be escaped");
            ++i_;
            if (c != '\\') {
                out += static_cast<char>(c);
                continue;
            }
            int e = peek();
            if (e == kEnd) return fail("unterminated string");
            ++i_;
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u':
                    if (!unicode_escape(out)) return false;
                    break;
                default:
                    --i_;
                    return fail("invalid escape in a string");
            }
        }
    }

    std::string_view s_;
    size_t i_ = 0;
    std::string error_;
};

}  // namespace

std::optional<JsonObject> JsonObject::parse(std::string_view text, std::string* error) {
    JsonObject obj;
    Reader reader(text);
    if (!reader.object(obj)) {
        if (error) *error = reader.error();
        return std::nullopt;
    }
    return obj;
}

std::string json_quoted(std::string_view text) {
    JsonObject one;
    one.set("", text);
    std::string dumped = one.dump();  // {"":"..."}
    return dumped.substr(4, dumped.size() - 5);
}

std::string json_with(const std::string& object, std::string_view key, std::string_view json_value) {
    std::string out = object.substr(0, object.size() - 1);  // without the closing brace
    if (out.size() > 1) out += ',';
    out += json_quoted(key);
    out += ':';
    out += json_value;
    out += '}';
    return out;
}
