"""Goal-image planning with a V-JEPA 2-AC world model: pose math, world-model wrapper, CEM, safety checks."""
