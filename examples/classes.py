"""Which input does the built-in MNIST model like most for each digit? The Python API, end to end.

    python examples/classes.py            # writes classes.png and a run folder under runs/ beside where you run it

In a notebook, the last line of a cell holding ``introspect.figure(result)``
shows the report inline.
"""
import introspect

loaded = introspect.load_model("mnist")
config = introspect.RenderConfig(steps=128, seed=0, snapshots=(16, 64))
result = introspect.visualize_classes(loaded.model, loaded.spec, classes=None, config=config)

for name, probability, logit in zip(result.class_names, result.probabilities, result.logits):
    print(f"class {name}: p={probability:.4f}, logit={logit:.1f}")

fig = introspect.figure(result)
fig.savefig("classes.png")
print("wrote classes.png")
print("wrote", introspect.save_run(result, loaded=loaded), "(`introspect rerun` repeats it)")
