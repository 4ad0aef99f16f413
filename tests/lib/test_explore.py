

def test_a_recorded_model_that_loads_code_needs_trust(tmp_path):
    from introspect.explore import load_recorded_model

    record = {"model": {"name": "x"}, "command_name": "classes",
              "load": {"source": str(tmp_path / "evil.py") + ":Net", "meta": {"size": 8}}}
    (tmp_path / "evil.py").write_text("raise SystemExit('ran')\n")
    loaded, why = load_recorded_model(record)
    assert loaded is None and "loads code" in why  # evil.py was never imported
    recipe = {"model": {"name": "x"}, "recipe": {"command": "classes", "model": str(tmp_path / "evil.py") + ":Net"}}
    loaded, why = load_recorded_model(recipe)  # a recipe without load arguments: the same rule
    assert loaded is None and "loads code" in why
