"""Where the apparatus sits in the frame, shared by the flow model and the renderer (fractions of the frame height)."""

PLATE_TOP = 0.9  # image row of the heated plate's top surface
NOZZLE_X = 0.5  # nozzle position across the frame
NOZZLE_TIP = 0.08  # nozzle tip height above the plate
