#pragma once
#include <qcustomplot.h>

#include <QString>
#include <QStringList>

#include <vector>

// Layer x token map of projections (tokens on x, hidden_states layers 0..L on y), coloured on
// the diverging palette centred on zero. Hovering a cell shows its layer, token and value.
class ProjectionHeatMap : public QCustomPlot {
    Q_OBJECT
public:
    ProjectionHeatMap(const QString& title, QWidget* parent = nullptr);

    // columns[t][layer]: one column per token; every column holds layerCount values.
    // The colours span -scale..+scale; expectedTokens keeps the x axis still while the map grows.
    void showColumns(const QStringList& tokenTexts, const std::vector<std::vector<float>>& columns, int layerCount,
                     double scale, int expectedTokens);
    void clearColumns(int layerCount, int expectedTokens);
    void setTitle(const QString& title);
    // Writes each column's text under it (rotated) instead of its number: for conversations and
    // samples, where the text is what the reader looks for.
    void setColumnLabelsShown(bool shown);
    // What a column is, for the axis and the hover text ("token", "sample").
    void setColumnNoun(const QString& noun);

    int columnCount() const { return static_cast<int>(columns_.size()); }
    int layerCount() const { return layerCount_; }
    double valueAt(int column, int layer) const;
    // The hover text for the cell under a widget position; empty outside the cells.
    QString describeCellAt(const QPoint& position) const;

private:
    void showToolTip(QMouseEvent* event);
    void updateColumnTicker();
    void resizeEvent(QResizeEvent* event) override;

    QCPTextElement* title_;
    QCPColorMap* map_;
    QCPColorScale* colorScale_;
    QStringList tokenTexts_;
    std::vector<std::vector<float>> columns_;
    int layerCount_ = 0;
    bool columnLabelsShown_ = false;
    QString columnNoun_;
};
