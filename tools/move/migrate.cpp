#include "tools/move/migrate.hpp"

#include <algorithm>

namespace tandem::tools {

namespace {

constexpr const char* k_aside_table = "_tandem_migrate_triggers";

// The statements that set each AUTOINCREMENT counter to the source's value.
std::vector<statement> sequence_statements(const database_schema& schema) {
  std::vector<statement> out;
  for (const auto& [name, seq] : schema.sequences) {
    statement up{"UPDATE sqlite_sequence SET seq = " + std::to_string(seq) + " WHERE name = ?", {}};
    up.params.positional = {value{name}};
    statement in{"INSERT INTO sqlite_sequence (name, seq) SELECT ?, " + std::to_string(seq) +
                     " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?)",
                 {}};
    in.params.positional = {value{name}, value{name}};
    out.push_back(std::move(up));
    out.push_back(std::move(in));
  }
  return out;
}

// Whether the target holds an object whose SQL is `sql`: how a batch of CREATEs whose answer
// was lost is known to have committed (nullopt: the target cannot tell yet).
std::optional<bool> has_object_sql(reader& target, const std::string& sql) {
  auto now = read_target_schema(target);
  if (!now) return std::nullopt;
  return std::any_of(now->begin(), now->end(), [&](const auto& o) { return o.second.sql == sql; });
}

// Plans one object of the source: created when the target lacks it (true), kept when the target
// has it identical, a conflict when the target has it otherwise.
bool plan_object(migrate_plan& p, const target_schema& target, const std::string& type, const std::string& name, const std::string& sql,
                 std::vector<statement>& into) {
  const auto it = target.find(name);
  if (it == target.end()) {
    into.push_back({sql, {}});
    return true;
  }
  if (it->second.type != type || normalize_sql(it->second.sql) != normalize_sql(sql)) {
    p.conflicts.push_back(type + " " + name + ": the target has\n       " + it->second.sql + "\n     the source has\n       " + sql);
  } else {
    ++p.kept;
  }
  return false;
}

void plan_schema(migrate_plan& p, const database_schema& source, const target_schema& target, const migrate_settings& s) {
  for (const auto& t : source.tables) {
    if (s.data_only) {
      if (!target.count(t.name)) p.missing.push_back(t.name);
      continue;
    }
    p.new_tables += plan_object(p, target, "table", t.name, t.sql, p.creates);
  }
  if (s.data_only) return;
  for (const auto& o : source.indexes) p.new_others += plan_object(p, target, o.type, o.name, o.sql, p.creates);
  for (const auto& o : source.views) p.new_others += plan_object(p, target, o.type, o.name, o.sql, p.creates);
  for (const auto& o : source.triggers)
    if (plan_object(p, target, o.type, o.name, o.sql, p.triggers)) p.trigger_names.push_back(o.name);
}

// The target's triggers on the tables rows go into: kept in k_aside_table and dropped, by one batch.
void plan_set_aside(migrate_plan& p, const database_schema& source, const target_schema& target) {
  std::vector<statement> aside{{std::string("CREATE TABLE IF NOT EXISTS ") + k_aside_table + " (name TEXT PRIMARY KEY, sql TEXT NOT NULL)", {}}};
  for (const auto& [name, o] : target) {
    if (o.type != "trigger" || !source.find(o.table)) continue;
    statement keep{std::string("INSERT OR REPLACE INTO ") + k_aside_table + " (name, sql) VALUES (?, ?)", {}};
    keep.params.positional = {value{name}, value{o.sql}};
    aside.push_back(std::move(keep));
    aside.push_back({"DROP TRIGGER IF EXISTS " + quote_name(name), {}});
    p.set_aside_names.push_back(name);
  }
  if (!p.set_aside_names.empty()) p.set_aside = std::move(aside);
}

copy_options plan_copy(const migrate_settings& s, bool to_d1, const std::string& source_id) {
  copy_options co;
  co.batch_rows = s.batch_size;
  co.parallel_tables = s.parallel_tables;
  co.timeout = s.timeout();
  co.continue_on_error = s.continue_on_error;
  co.dry_run = s.dry_run;
  co.resume = s.resume;
  co.source_id = source_id;
  co.limits = to_d1 ? insert_limits::for_d1() : insert_limits::for_sqlite();
  co.stall_after_batches = s.stall_after_batches;
  return co;
}

}  // namespace

outcome<target_schema> read_target_schema(reader& r) {
  auto q = r.query_one("SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE sql IS NOT NULL");
  if (!q) return q.error();
  target_schema out;
  for (const auto& row : q->rows) {
    auto text = [&](std::size_t i) { return std::get_if<std::string>(&row[i]) ? std::get<std::string>(row[i]) : std::string(); };
    out[text(1)] = {text(0), text(2), text(3)};
  }
  return out;
}

std::vector<std::string> schema_problems(const database_schema& source, bool to_d1) {
  std::vector<std::string> problems = to_d1 ? d1_problems(source) : std::vector<std::string>{};
  if (!to_d1) {
    for (const auto& t : source.tables)
      if (is_internal_name(t.name)) problems.push_back("table " + t.name + ": the name is reserved");
  }
  return problems;
}

migrate_plan plan_migration(const database_schema& source, const target_schema& target, const migrate_settings& s, bool to_d1,
                            const std::string& source_id) {
  migrate_plan p;
  p.problems = schema_problems(source, to_d1);
  if (!p.problems.empty()) return p;
  plan_schema(p, source, target, s);
  if (!s.schema_only) plan_set_aside(p, source, target);
  if (!s.schema_only) p.sequences = sequence_statements(source);
  p.copy = plan_copy(s, to_d1, source_id);
  return p;
}

outcome<void> create_schema(backends::store& target, reader& target_reader, const migrate_plan& p, std::chrono::milliseconds timeout) {
  if (p.creates.empty()) return {};
  // One atomic batch: if D1 did not answer, it is in if its first object is.
  return run_until_known(target, p.creates, timeout, [&, first = p.creates.front().sql] { return has_object_sql(target_reader, first); });
}

outcome<void> set_aside_triggers(backends::store& target, const migrate_plan& p, std::chrono::milliseconds timeout) {
  if (p.set_aside.empty()) return {};
  return run_until_known(target, p.set_aside, timeout);
}

std::int64_t count_rows(reader& source, const database_schema& schema) {
  std::int64_t total = 0;
  std::vector<statement> counts;
  for (const auto& t : schema.tables) counts.push_back({"SELECT count(*) FROM " + quote_name(t.name), {}});
  if (auto c = source.query(std::move(counts)))
    for (const auto& r : *c)
      if (!r.rows.empty() && std::holds_alternative<std::int64_t>(r.rows[0][0])) total += std::get<std::int64_t>(r.rows[0][0]);
  return total;
}

outcome<std::vector<std::string>> restore_triggers(backends::store& target, migrate_plan& p, std::chrono::milliseconds timeout) {
  auto there = run_sync(target, {{std::string("SELECT count(*) FROM sqlite_schema WHERE name = '") + k_aside_table + "'", {}}});
  if (!there) return there.error();
  if (std::get<std::int64_t>(there->at(0).rows.at(0).at(0)) == 0) return std::vector<std::string>{};
  auto kept = run_sync(target, {{std::string("SELECT a.name, a.sql, s.name IS NOT NULL FROM ") + k_aside_table +
                                     " a LEFT JOIN sqlite_schema s ON s.type = 'trigger' AND s.name = a.name ORDER BY a.name",
                                 {}}});
  if (!kept) return kept.error();
  std::vector<statement> back;
  std::vector<std::string> names;
  for (const auto& row : kept->at(0).rows) {
    names.push_back(std::get<std::string>(row[0]));
    if (std::get<std::int64_t>(row[2]) == 0) back.push_back({std::get<std::string>(row[1]), {}});
  }
  back.push_back({std::string("DROP TABLE ") + k_aside_table, {}});
  // If D1 did not answer: it is in once the table is gone.
  auto r = run_until_known(target, back, timeout, [&]() -> std::optional<bool> {
    auto left = run_sync(target, {{std::string("SELECT count(*) FROM sqlite_schema WHERE name = '") + k_aside_table + "'", {}}});
    if (!left) return std::nullopt;
    return std::get<std::int64_t>(left->at(0).rows.at(0).at(0)) == 0;
  });
  if (!r) return r.error();
  // A trigger of the source that an interrupted run had set aside is back already.
  for (std::size_t i = p.trigger_names.size(); i-- > 0;) {
    if (std::find(names.begin(), names.end(), p.trigger_names[i]) == names.end()) continue;
    p.trigger_names.erase(p.trigger_names.begin() + static_cast<std::ptrdiff_t>(i));
    p.triggers.erase(p.triggers.begin() + static_cast<std::ptrdiff_t>(i));
  }
  return names;
}

outcome<void> finish_schema(backends::store& target, reader& target_reader, const migrate_plan& p, const migrate_settings& s) {
  std::vector<statement> after = s.data_only ? std::vector<statement>{} : p.triggers;
  if (!s.schema_only) after.insert(after.end(), p.sequences.begin(), p.sequences.end());
  if (after.empty()) return {};
  return run_until_known(target, after, s.timeout(), [&, first = after.front().sql]() -> std::optional<bool> {
    if (s.data_only || p.triggers.empty()) return false;  // only counters: setting them twice is harmless
    return has_object_sql(target_reader, first);
  });
}

}  // namespace tandem::tools
