"""Why a model said what it said: Grad-CAM per task head, LIME superpixels, and galleries of
the most confident mistakes per demographic group."""
