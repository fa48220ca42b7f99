"""Thin views: parse (done by the endpoint wrapper), call one service, render one schema."""
