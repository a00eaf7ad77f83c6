"""Words for people: the display name and one-line description of each Planet label.

The label's key (``Label.name``) stays what the data and the models use, typos included
(``artisinal_mine``); people read these. Curators can change both in the admin.
"""

from __future__ import annotations

PLANET_LABEL_WORDS: dict[str, tuple[str, str]] = {
    "clear": ("Clear", "Clear sky: no clouds or haze over the chip."),
    "partly_cloudy": ("Partly cloudy", "Scattered clouds; most of the ground is visible."),
    "haze": ("Haze", "The ground is visible through a hazy veil."),
    "cloudy": ("Cloudy", "Clouds hide the ground, so no land label is given."),
    "primary": ("Primary rainforest", "Dense, undisturbed tree cover."),
    "water": ("Water", "Rivers, lakes, reservoirs, flooded land."),
    "habitation": ("Habitation", "Houses, villages, towns and other buildings."),
    "agriculture": ("Agriculture", "Land cleared for crops or pasture."),
    "road": ("Road", "Any road or track, paved or not."),
    "cultivation": ("Cultivation", "Small plots of shifting, small-scale farming."),
    "bare_ground": ("Bare ground", "Naturally treeless ground, not cleared by people."),
    "slash_burn": ("Slash and burn", "A freshly burned clearing of shifting cultivation."),
    "selective_logging": ("Selective logging",
                          "Winding tracks where single valuable trees were taken."),
    "blooming": ("Blooming", "Trees flowering together, seen as bright patches."),
    "conventional_mine": ("Conventional mine", "A large, industrial mining site."),
    "artisinal_mine": ("Artisanal mine", "Small-scale, often illegal, mining along rivers "
                                          "(the data set spells the key 'artisinal_mine')."),
    "blow_down": ("Blow down", "Trees felled by strong wind, in a fan-shaped patch."),
}


def words_for(name: str) -> dict[str, str]:
    """``display_name`` and ``description`` defaults for a new label."""
    display, description = PLANET_LABEL_WORDS.get(name, (name.replace("_", " ").capitalize(),
                                                         ""))
    return {"display_name": display, "description": description}
