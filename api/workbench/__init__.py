"""The risk team's workbench: product versions under maker-checker (`store`), what-if simulation
(`simulate`, `report`) and simulation jobs started over the API (`jobs`)."""
