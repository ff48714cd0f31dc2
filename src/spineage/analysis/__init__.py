"""The spine age gap analysis: its associations with findings and lifestyle, odds ratios, the explainability model."""
